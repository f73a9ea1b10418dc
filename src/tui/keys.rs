//! The terminal app's keys: what each does to the [`App`], by focus (the
//! help, the approval pop-up, the input line, the conversations pane).
//! The README's key map and the help list them ([`super::view::KEYS`]).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::app::{Action, App, Entry, Focus, Link, Role, Target};

impl App {
    pub(super) fn on_key(&mut self, k: KeyEvent) -> Vec<Action> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(k.code, KeyCode::Char('c') | KeyCode::Char('q')) {
            self.quit = true;
            return vec![Action::Quit];
        }
        if self.help {
            // Any key closes the help.
            self.help = false;
            return vec![];
        }
        if k.code == KeyCode::F(2) && self.phone.is_none() {
            self.show_qr = !self.show_qr;
            return vec![];
        }
        if self.show_qr
            && let Some(out) = self.on_link_key(k)
        {
            return out;
        }
        if let Some(a) = self.approvals.front().cloned() {
            let answer = match k.code {
                KeyCode::Char('y') => Some("yes"),
                KeyCode::Char('a') => Some("always"),
                KeyCode::Char('n') => Some("no"),
                KeyCode::Up => {
                    self.approval_scroll = self.approval_scroll.saturating_sub(1);
                    None
                }
                KeyCode::Down => {
                    self.approval_scroll = self.approval_scroll.saturating_add(1);
                    None
                }
                _ => None,
            };
            return match answer {
                Some(answer) if self.link == Link::Online => {
                    self.approvals.pop_front();
                    self.approval_scroll = 0;
                    vec![Action::Send(
                        json!({"type": "answer", "code": a.code, "answer": answer}),
                    )]
                }
                Some(_) => {
                    self.notice = Some("offline: the answer waits until the bridge is back".into());
                    vec![]
                }
                None => vec![],
            };
        }
        match k.code {
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Input => Focus::Conversations,
                    Focus::Conversations => Focus::Input,
                };
                return vec![];
            }
            KeyCode::PageUp => {
                self.scroll_back = self.scroll_back.saturating_add(10);
                return vec![];
            }
            KeyCode::PageDown => {
                self.scroll_back = self.scroll_back.saturating_sub(10);
                return vec![];
            }
            KeyCode::F(1) => {
                self.help = true;
                return vec![];
            }
            _ => {}
        }
        match self.focus {
            Focus::Conversations => self.on_list_key(k),
            Focus::Input => self.on_input_key(k),
        }
    }

    fn on_list_key(&mut self, k: KeyEvent) -> Vec<Action> {
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.cursor = (self.cursor + 1).min(self.rows.len().saturating_sub(1))
            }
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('q') => {
                self.quit = true;
                return vec![Action::Quit];
            }
            KeyCode::Enter => {
                if let Some(row) = self.rows.get(self.cursor) {
                    return self.select(row.target.clone());
                }
            }
            KeyCode::Esc => self.focus = Focus::Input,
            _ => {}
        }
        vec![]
    }

    fn on_input_key(&mut self, k: KeyEvent) -> Vec<Action> {
        match k.code {
            KeyCode::Char('?') if self.input.is_empty() => self.help = true,
            KeyCode::Char(c) => self.input.push(c),
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Esc => self.input.clear(),
            KeyCode::Up => self.scroll_back = self.scroll_back.saturating_add(1),
            KeyCode::Down => self.scroll_back = self.scroll_back.saturating_sub(1),
            KeyCode::Enter => return self.submit(),
            _ => {}
        }
        vec![]
    }

    /// Sends the input line to the selected conversation; kept when it
    /// cannot go (offline, a WhatsApp chat).
    fn submit(&mut self) -> Vec<Action> {
        let text = self.input.trim().to_owned();
        if text.is_empty() {
            return vec![];
        }
        let Target::Api(conv) = self.selected.clone() else {
            self.notice =
                Some("WhatsApp chats are read-only here: pick an API conversation".into());
            return vec![];
        };
        if conv.is_empty() {
            self.notice = Some("waiting for the bridge to name the key's conversation".into());
            return vec![];
        }
        if self.link != Link::Online {
            self.notice = Some("offline: the line is kept until the bridge is back".into());
            return vec![];
        }
        self.input.clear();
        self.scroll_back = 0;
        self.transcripts
            .entry(self.selected.clone())
            .or_default()
            .entries
            .push(Entry {
                role: Role::You,
                text: text.clone(),
            });
        vec![Action::Send(
            json!({"type": "send", "conversation": conv, "text": text}),
        )]
    }

    /// Shows `target`: its history is fetched, an API conversation is
    /// subscribed to.
    fn select(&mut self, target: Target) -> Vec<Action> {
        self.selected = target.clone();
        self.scroll_back = 0;
        self.focus = Focus::Input;
        let mut out = vec![self.history(target.clone())];
        if let Target::Api(name) = &target
            && self.subscribed.insert(name.clone())
        {
            out.insert(
                0,
                Action::Send(json!({"type": "subscribe", "conversation": name})),
            );
        }
        if let Some(row) = self.rows.iter_mut().find(|r| r.target == target) {
            row.unread = 0;
        }
        out
    }
}
