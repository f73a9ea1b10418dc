//! The WhatsApp link pop-up (`F2`): the QR code to scan while WhatsApp
//! waits to be linked, or, after `p` and a phone number, the pairing code
//! to type on the phone; its keys, and the answers to asking for a link.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use serde_json::Value;

use super::app::{Action, App, Link};

/// Where the phone's owner types the pairing code (two lines: fits 80
/// columns).
pub const ON_THE_PHONE: [&str; 2] = [
    "On the phone: WhatsApp → Settings → Linked devices → Link a device",
    "→ Link with phone number instead, and type this code.",
];

/// The longest number typed (the bridge checks what it is).
const PHONE_MAX: usize = 24;

impl App {
    /// A key while the pop-up is open; `None`: not the pop-up's.
    pub(super) fn on_link_key(&mut self, k: KeyEvent) -> Option<Vec<Action>> {
        if let Some(phone) = self.phone.as_mut() {
            match k.code {
                KeyCode::Char(c) if phone.chars().count() < PHONE_MAX => phone.push(c),
                KeyCode::Backspace => {
                    phone.pop();
                }
                KeyCode::Esc => self.phone = None,
                KeyCode::Enter => return Some(self.ask_by_phone()),
                _ => {}
            }
            return Some(vec![]);
        }
        match k.code {
            KeyCode::Esc => self.show_qr = false,
            KeyCode::Char('p') => {
                self.phone = Some(String::new());
                self.link_note = None;
            }
            _ => return None,
        }
        Some(vec![])
    }

    /// Enter on the typed number: the bridge is asked for a pairing code.
    fn ask_by_phone(&mut self) -> Vec<Action> {
        let phone = self.phone.clone().unwrap_or_default();
        if phone.trim().is_empty() {
            return vec![];
        }
        if self.link != Link::Online {
            self.link_note = Some("offline: the number is kept until the bridge is back".into());
            return vec![];
        }
        self.phone = None;
        self.link_note = Some(format!("asking the bridge for a pairing code for {phone}…"));
        vec![Action::Link(Some(phone.trim().to_owned()))]
    }

    /// What the bridge answered to a request for a link.
    pub(super) fn on_linked(&mut self, answer: Result<Value, String>) {
        match answer {
            Ok(v) => {
                self.whatsapp = v["code"].as_str().map(str::to_owned);
                let pairing = &v["pairing"];
                let code = pairing["code"].as_str().map(str::to_owned);
                self.qr = code.clone().filter(|_| pairing["kind"] == "qr");
                self.pair_code = code.filter(|_| pairing["kind"] == "phone_code");
                self.link_note = Some(if self.pair_code.is_some() {
                    "the code is valid for about 3 minutes".into()
                } else {
                    format!(
                        "{}; the code shows here when WhatsApp sends it",
                        v["message"].as_str().unwrap_or("asked")
                    )
                });
            }
            Err(why) => self.link_note = Some(why),
        }
    }
}

/// A pairing code as the phone shows its boxes, spaced to read out:
/// `A B C D - E F G H`.
pub fn spaced(code: &str) -> String {
    let grouped = crate::channel::whatsapp::group_code(code);
    let chars: Vec<String> = grouped.chars().map(String::from).collect();
    chars.join(" ")
}

/// The pop-up: the number being typed, the pairing code, the QR code (as
/// half-blocks, redrawn as WhatsApp rotates it), or why there is none.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line> = Vec::new();
    let mut title = " Link WhatsApp ";
    let mut hint = " Esc closes ";
    if let Some(phone) = &app.phone {
        lines.push(Line::from(
            "Link with a phone number: yours, with its country code",
        ));
        lines.push(Line::from(""));
        lines.push(Line::from(vec![
            Span::styled("number: ", bold),
            Span::raw(format!("{phone}▌")),
        ]));
        hint = " Enter asks for a pairing code · Esc cancels ";
    } else if let Some(code) = &app.pair_code {
        title = " WhatsApp pairing code ";
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!("   {}   ", spaced(code)),
            bold.fg(Color::Yellow),
        )));
        lines.push(Line::from(""));
        lines.extend(ON_THE_PHONE.map(Line::from));
        hint = " p another number · Esc closes ";
    } else if let Some(block) = app
        .qr
        .as_deref()
        .and_then(crate::channel::whatsapp::render_qr)
    {
        // A cut code cannot be scanned: say how big it needs the terminal.
        let (w, h) = (
            block.lines().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 2,
            block.lines().count() as u16 + 2,
        );
        if w > area.width || h > area.height {
            lines.push(Line::from(format!(
                "The QR code needs a terminal of {w}×{h}; this one is {}×{}. Enlarge it, or press p to link with a phone number.",
                area.width, area.height
            )));
            title = " QR code ";
        } else {
            lines.extend(block.lines().map(|l| Line::from(l.to_owned())));
            title = " WhatsApp → Linked devices → Link a device ";
            hint = " p phone number instead · Esc closes ";
        }
    } else {
        lines.push(Line::from(format!(
            "No QR code to scan: WhatsApp's link is {}.",
            app.whatsapp.as_deref().unwrap_or("unknown")
        )));
        lines.push(Line::from(
            "p asks the bridge for a new link by phone number (once the old one has ended).",
        ));
        hint = " p phone number · Esc closes ";
    }
    if let Some(note) = &app.link_note {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            note.clone(),
            Style::default().fg(Color::Yellow),
        )));
    }
    let widest = lines.iter().map(|l| l.width() as u16).max().unwrap_or(0);
    let width = (widest
        .max(title.chars().count() as u16)
        .max(hint.chars().count() as u16)
        + 2)
    .min(area.width);
    let para = Paragraph::new(lines).wrap(Wrap { trim: false });
    let height = para.line_count(width.saturating_sub(2)) as u16 + 2;
    let rect = super::view::centered(area, width, height);
    f.render_widget(Clear, rect);
    f.render_widget(
        para.block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .title_bottom(hint),
        ),
        rect,
    );
}
