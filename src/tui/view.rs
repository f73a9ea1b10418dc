//! Drawing: a pure function of [`App`] onto a ratatui frame. Panes: the
//! conversations on the left, the reply pane on the right, the input line
//! below them, the status bar at the bottom; the approval pop-up and the
//! help over them.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::app::{App, Focus, Link, Role, Target};
use super::markdown;

/// The keys, as the help shows them (the README's key map says the same).
pub const KEYS: &[(&str, &str)] = &[
    (
        "Enter",
        "send the line (in the list: open the conversation)",
    ),
    ("Tab", "switch between the input line and the conversations"),
    (
        "↑ ↓ / PgUp PgDn",
        "scroll the reply pane (in the list: move)",
    ),
    ("y / a / n", "approval: allow once / always / reject"),
    ("Esc", "clear the line; close the help"),
    ("? / F1", "this help (? on an empty line)"),
    (
        "F2",
        "link WhatsApp: its QR code while it waits to be linked (Esc closes)",
    ),
    (
        "p",
        "in the F2 pop-up: link by phone number instead, and see the pairing code",
    ),
    ("Ctrl-C / Ctrl-Q", "quit (q in the list)"),
];

pub fn draw(app: &App, f: &mut Frame) {
    let [main, input, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let list_width = (main.width / 4).clamp(14, 28);
    let [list, replies] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(10)]).areas(main);
    draw_list(app, f, list);
    draw_replies(app, f, replies);
    draw_input(app, f, input);
    draw_status(app, f, status);
    if app.help {
        draw_help(f, f.area());
    } else if app.show_qr {
        super::link::draw(app, f, f.area());
    } else if !app.approvals.is_empty() {
        draw_approval(app, f, f.area());
    }
}

fn focused(on: bool) -> Style {
    if on {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default()
    }
}

/// How long ago, in a few characters: `now`, `5m`, `3h`, `2d`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => "now".into(),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn draw_list(app: &App, f: &mut Frame, area: Rect) {
    let now = chrono::Utc::now().timestamp_millis();
    let items: Vec<ListItem> = app
        .rows
        .iter()
        .map(|r| {
            let mark = match r.unread {
                0 => String::new(),
                n => format!(" ({n})"),
            };
            let style = if r.target == app.selected {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            let kind = match r.target {
                Target::Api(_) => "",
                Target::Chat(_) => "wa ",
            };
            let mut spans = vec![
                Span::styled(kind, Style::default().add_modifier(Modifier::DIM)),
                Span::styled(format!("{}{mark}", r.name), style),
            ];
            if let Some(at) = r.last_activity_ms.filter(|at| *at > 0) {
                spans.push(Span::styled(
                    format!(" {}", age(now - at)),
                    Style::default().add_modifier(Modifier::DIM),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let list = List::new(items)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title("Conversations")
                .border_style(focused(app.focus == Focus::Conversations)),
        )
        .highlight_symbol("> ");
    let mut state = ListState::default();
    if app.focus == Focus::Conversations {
        state.select(Some(app.cursor));
    }
    f.render_stateful_widget(list, area, &mut state);
}

fn draw_replies(app: &App, f: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    if let Some(tr) = app.transcript(&app.selected) {
        for e in &tr.entries {
            let (label, style) = match e.role {
                Role::You => (
                    "you: ",
                    Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                ),
                Role::Assistant => ("", Style::default()),
                Role::Delivered | Role::Tool => ("", Style::default().add_modifier(Modifier::DIM)),
            };
            let mut md = markdown::lines(&e.text, style.remove_modifier(Modifier::BOLD));
            if !label.is_empty() {
                md[0].spans.insert(0, Span::styled(label, style));
            }
            lines.extend(md);
            lines.push(Line::from(""));
        }
        if !tr.streaming.is_empty() {
            let mut md = markdown::lines(&tr.streaming, Style::default());
            if let Some(last) = md.last_mut() {
                last.spans.push(Span::raw("▌"));
            }
            lines.extend(md);
        }
    }
    let title = match &app.selected {
        Target::Api(n) => format!(" {n} "),
        Target::Chat(j) => format!(" {j} (read-only) "),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    let para = Paragraph::new(lines).wrap(Wrap { trim: false });
    let total = para.line_count(inner.width);
    let offset = total
        .saturating_sub(inner.height as usize)
        .saturating_sub(app.scroll_back as usize);
    let para = para
        .block(block)
        .scroll((offset.min(u16::MAX as usize) as u16, 0));
    f.render_widget(para, area);
}

fn draw_input(app: &App, f: &mut Frame, area: Rect) {
    let title = if app.writable() {
        format!(" Message to {} (Enter sends) ", app.selected.label())
    } else {
        " read-only: Tab to pick an API conversation ".into()
    };
    let mut block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_style(focused(app.focus == Focus::Input));
    if let Some(n) = &app.notice {
        block = block
            .title_bottom(Line::from(format!(" {n} ")).style(Style::default().fg(Color::Yellow)));
    }
    let inner = block.inner(area);
    // The line's end stays in view.
    let width = inner.width.saturating_sub(1) as usize;
    let chars: Vec<char> = app.input.chars().collect();
    let shown: String = chars[chars.len().saturating_sub(width)..].iter().collect();
    let cursor_x = inner.x + shown.chars().count() as u16;
    f.render_widget(Paragraph::new(shown).block(block), area);
    if app.focus == Focus::Input && !app.help && app.approvals.is_empty() {
        f.set_cursor_position(Position::new(cursor_x, inner.y));
    }
}

fn draw_status(app: &App, f: &mut Frame, area: Rect) {
    let (link, style) = match &app.link {
        Link::Online => ("● online".to_owned(), Style::default().fg(Color::Green)),
        Link::Connecting => (
            "○ connecting".to_owned(),
            Style::default().fg(Color::Yellow),
        ),
        Link::Offline(why) => (
            format!("○ offline, reconnecting ({why})"),
            Style::default().fg(Color::Red),
        ),
    };
    let mut spans = vec![Span::styled(link, style)];
    if let Some(wa) = &app.whatsapp {
        spans.push(Span::raw(format!(" · {wa}")));
    }
    spans.push(Span::raw(format!(
        " · {} running · {} queued",
        app.runs_active, app.queued
    )));
    // The model the selected chat's turns use: its own, else the default.
    let row = app.rows.iter().find(|r| r.target == app.selected);
    match row.map(|r| (r.model.as_deref(), r.default_model.as_deref())) {
        Some((Some(m), _)) => spans.push(Span::raw(format!(" · {m}"))),
        Some((None, Some(d))) => spans.push(Span::raw(format!(" · {d} (default)"))),
        _ => {}
    }
    if !app.approvals.is_empty() {
        spans.push(Span::styled(
            format!(" · {} approval(s)", app.approvals.len()),
            Style::default().fg(Color::Yellow),
        ));
    }
    if app.pair_code.is_some() {
        spans.push(Span::styled(
            " · F2 pairing code",
            Style::default().fg(Color::Yellow),
        ));
    } else if app.qr.is_some() {
        spans.push(Span::styled(
            " · F2 QR to link WhatsApp",
            Style::default().fg(Color::Yellow),
        ));
    }
    spans.push(Span::raw(" · ? help"));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A rectangle `width` wide and `height` high in the middle of `area`.
pub(super) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_approval(app: &App, f: &mut Frame, area: Rect) {
    let Some(a) = app.approvals.front() else {
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!("{} asks to use ", a.chat)),
            Span::styled(
                a.permission.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" (request {}):", a.code)),
        ]),
        Line::from(""),
    ];
    for p in &a.detail {
        for l in p.split('\n') {
            lines.push(Line::from(Span::styled(
                l.to_owned(),
                Style::default().fg(Color::Yellow),
            )));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "y allow once · a always · n reject",
        Style::default().add_modifier(Modifier::BOLD),
    )));
    let width = area.width.saturating_sub(4).min(100);
    let para = Paragraph::new(lines).wrap(Wrap { trim: false });
    let needed = para.line_count(width.saturating_sub(2)) as u16 + 2;
    let rect = centered(area, width, needed.min(area.height.saturating_sub(2)));
    let more = needed > rect.height;
    let title = if more {
        format!(
            " Approval needed ({} waiting) ↑↓ scroll ",
            app.approvals.len()
        )
    } else {
        format!(" Approval needed ({} waiting) ", app.approvals.len())
    };
    let max_scroll = needed.saturating_sub(rect.height);
    f.render_widget(Clear, rect);
    f.render_widget(
        para.block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(Style::default().fg(Color::Yellow)),
        )
        .scroll((app.approval_scroll.min(max_scroll), 0)),
        rect,
    );
}

fn draw_help(f: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:<17}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("Any key closes this help."));
    let rect = centered(area, 76, lines.len() as u16 + 2);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" Keys ")),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::{Value, json};

    use crate::tui::app::Event;

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(app, f)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn an_80_by_24_screen_shows_panes_reply_and_status() {
        let mut app = App::new("tui");
        app.update(Event::Online);
        app.update(Event::Frame(
            json!({"type": "message", "conversation": "tui", "id": "1", "text": "**Hi** there"}),
        ));
        app.update(Event::Frame(
            json!({"type": "delta", "conversation": "tui", "text": "streaming now"}),
        ));
        let s = screen(&app, 80, 24);
        assert!(s.contains("Conversations"), "{s}");
        assert!(s.contains("Hi there"), "{s}");
        assert!(s.contains("streaming now▌"), "{s}");
        assert!(s.contains("Message to tui"), "{s}");
        assert!(s.contains("● online"), "{s}");
        app.update(Event::Offline("refused".into()));
        assert!(screen(&app, 80, 24).contains("offline, reconnecting"));
    }

    #[test]
    fn a_long_command_is_shown_whole_in_the_pop_up() {
        let mut app = App::new("tui");
        let cmd = format!("echo {}END", "abcdefghij".repeat(40));
        app.update(Event::Frame(json!({"type": "approval", "code": "1234",
            "chat": "api:tui", "permission": "bash", "patterns": [cmd.clone()]})));
        let s = screen(&app, 80, 24);
        // Wrapped over lines: every character is there, in order (the
        // pop-up covers the panes beside it but for their borders).
        let joined: String = s
            .chars()
            .filter(|c| !matches!(c, '│' | ' ' | '\n'))
            .collect();
        let cmd: String = cmd.chars().filter(|c| *c != ' ').collect();
        assert!(joined.contains(&cmd), "{s}");
        assert!(s.contains("y allow once"), "{s}");
    }

    #[test]
    fn the_qr_code_of_a_link_frame_is_drawn_on_f2() {
        use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let mut app = App::new("tui");
        app.update(Event::Frame(json!({"type": "link", "up": false,
            "code": "whatsapp-pairing", "message": "scan", "qr": "2@AbCdEf,xyz=,abc="})));
        let s = screen(&app, 80, 24);
        assert!(s.contains("F2 QR"), "{s}");
        app.update(Event::Key(KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE)));
        let s = screen(&app, 80, 24);
        let want = crate::channel::whatsapp::render_qr("2@AbCdEf,xyz=,abc=").unwrap();
        for line in want.lines() {
            assert!(s.contains(line.trim_end()), "{line:?} not in\n{s}");
        }
        // Linked: no code any more, and the pop-up says so.
        app.update(Event::Frame(json!({"type": "link", "up": true,
            "code": "whatsapp-connected", "message": "ok", "qr": null})));
        let s = screen(&app, 80, 24);
        assert!(s.contains("No QR code to scan"), "{s}");
        assert!(!s.contains("F2 QR"), "{s}");
        // A code as long as WhatsApp's does not fit 24 rows: not cut, said.
        let long = format!(
            "2@{},{},{}",
            "A".repeat(100),
            "b".repeat(44),
            "c".repeat(44)
        );
        app.update(Event::Frame(json!({"type": "link", "up": false,
            "code": "whatsapp-pairing", "message": "scan", "qr": long})));
        let s = screen(&app, 80, 24);
        assert!(s.contains("needs a terminal of"), "{s}");
        let s = screen(&app, 120, 50);
        let want = crate::channel::whatsapp::render_qr(&long).unwrap();
        for line in want.lines() {
            assert!(s.contains(line.trim_end()), "{line:?} not in\n{s}");
        }
    }

    #[test]
    fn the_pairing_code_is_drawn_big_with_where_to_enter_it() {
        let mut app = App::new("tui");
        app.update(Event::Frame(json!({"type": "link", "up": false,
            "code": "whatsapp-pairing", "message": "enter it", "pair_code": "ABCD1234"})));
        let s = screen(&app, 80, 24);
        assert!(s.contains("F2 pairing code"), "{s}");
        app.show_qr = true;
        let s = screen(&app, 80, 24);
        assert!(s.contains("A B C D - 1 2 3 4"), "{s}");
        for line in crate::tui::link::ON_THE_PHONE {
            assert!(s.contains(line), "{line:?} not in\n{s}");
        }
        // Typing a number: the line, and what Enter does.
        app.phone = Some("+49 151".into());
        let s = screen(&app, 80, 24);
        assert!(s.contains("number: +49 151▌"), "{s}");
        assert!(s.contains("Enter asks for a pairing code"), "{s}");
        app.phone = None;
        app.link_note = Some("refused (409 Conflict): the WhatsApp link has not ended".into());
        app.pair_code = None;
        let s = screen(&app, 80, 24);
        assert!(s.contains("refused (409 Conflict)"), "{s}");
        assert!(s.contains("p asks the bridge"), "{s}");
    }

    #[test]
    fn a_whatsapp_chats_unread_count_is_shown() {
        let mut app = App::new("tui");
        app.update(Event::Chats(vec![
            json!({"chat": "491511111111@s.whatsapp.net",
            "name": "Ann", "kind": "whatsapp", "unread": 3, "last_seq": 9}),
        ]));
        assert!(screen(&app, 80, 24).contains("wa Ann (3)"));
    }

    #[test]
    fn the_status_bar_shows_the_chats_model_or_the_default_it_runs_with() {
        let mut app = App::new("tui");
        let tui = |model: Value| {
            Event::Chats(vec![
                json!({"chat": "api:tui", "name": "tui", "kind": "api",
                "conversation": "tui", "model": model, "default_model": "openai/gpt-x"}),
            ])
        };
        app.update(tui(Value::Null));
        let s = screen(&app, 100, 24);
        assert!(s.contains("· openai/gpt-x (default) ·"), "{s}");
        app.update(tui(json!("anthropic/claude-y")));
        let s = screen(&app, 100, 24);
        assert!(s.contains("· anthropic/claude-y ·"), "{s}");
        assert!(!s.contains("gpt-x"), "{s}");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(-5), "now");
        assert_eq!(age(59_999), "now");
        assert_eq!(age(5 * 60_000), "5m");
        assert_eq!(age(3 * 3_600_000 + 1), "3h");
        assert_eq!(age(2 * 86_400_000), "2d");
    }

    #[test]
    fn the_readmes_key_map_is_the_helps() {
        // Read at run time: compiled in, the image's build would need it.
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for (k, what) in KEYS {
            let row = format!("| `{k}` | {what} |");
            assert!(readme.contains(&row), "README.md lacks {row}");
        }
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        let mut app = App::new("tui");
        app.update(Event::Frame(json!({"type": "approval", "code": "1234",
            "chat": "api:tui", "permission": "bash", "patterns": ["ls"]})));
        for (w, h) in [(1, 1), (10, 5), (20, 8), (80, 24), (200, 60)] {
            screen(&app, w, h);
        }
        app.help = true;
        screen(&app, 12, 4);
    }
}
