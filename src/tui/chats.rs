//! The conversations the app lists and shows: the bridge's chat list
//! (names, activity, models, a WhatsApp chat's unread count), each
//! conversation's history, and the owner's read marks they move (opening
//! a chat, and new messages arriving while it is open, mark it read).

use serde_json::Value;

use super::app::{Action, App, Entry, Role, Target};

impl App {
    /// The chat list: names, activity, models, and a WhatsApp chat's
    /// unread count; the open chat's new messages are fetched (and read).
    pub(super) fn on_chats(&mut self, list: &[Value]) -> Vec<Action> {
        let mut out = vec![];
        for c in list {
            let Some(jid) = c["chat"].as_str() else {
                continue;
            };
            let target = match c["conversation"].as_str() {
                Some(name) if c["kind"] == "api" => Target::Api(name.to_owned()),
                _ => Target::Chat(jid.to_owned()),
            };
            let name = c["name"].as_str().unwrap_or(jid).to_owned();
            let last = c["last_activity"].as_i64();
            let selected = self.selected == target;
            let marked = self.marks.get(&target).copied().unwrap_or(0);
            let asking = self
                .transcripts
                .get(&target)
                .is_some_and(|t| t.asked_at.is_some());
            let row = self.ensure_row(target.clone(), &name, None);
            row.last_activity_ms = last;
            row.last_seq = c["last_seq"].as_i64().unwrap_or(0);
            row.model = c["model"].as_str().map(str::to_owned);
            row.default_model = c["default_model"].as_str().map(str::to_owned);
            // A WhatsApp chat's count is the bridge's (API ones count
            // their frames).
            if let Target::Chat(_) = target {
                let unread = c["unread"].as_u64().unwrap_or(0) as usize;
                row.unread = unread;
                // Open, with messages not read yet: show them (the history
                // then moves the mark).
                if selected && unread > 0 && row.last_seq > marked && !asking {
                    out.push(self.history(target));
                }
            }
        }
        out
    }

    /// Asks for `target`'s history.
    pub(super) fn history(&mut self, target: Target) -> Action {
        let tr = self.transcripts.entry(target.clone()).or_default();
        tr.asked_at = Some(tr.entries.len());
        Action::History(target)
    }

    /// A conversation's history arrived: shown, and if it is the one open
    /// and holds messages past the read mark, the mark moves to them.
    pub(super) fn on_history(&mut self, target: Target, messages: &[Value]) -> Vec<Action> {
        let newest = messages.iter().filter_map(|m| m["seq"].as_i64()).max();
        let mut out = vec![];
        if let Some(seq) = newest
            && self.selected == target
            && self.marks.get(&target).is_none_or(|m| seq > *m)
        {
            self.marks.insert(target.clone(), seq);
            if let Some(row) = self.rows.iter_mut().find(|r| r.target == target) {
                row.unread = 0;
            }
            out.push(Action::Read(target.clone(), seq));
        }
        let tr = self.transcripts.entry(target).or_default();
        let since = tr.asked_at.take().unwrap_or(tr.entries.len());
        let newer: Vec<Entry> = tr.entries.split_off(since.min(tr.entries.len()));
        tr.tools.clear();
        tr.entries = messages
            .iter()
            .map(|m| Entry {
                role: if m["direction"] == "in" {
                    Role::You
                } else {
                    Role::Assistant
                },
                text: m["text"].as_str().unwrap_or("").to_owned(),
            })
            .collect();
        // What arrived meanwhile, unless the history has it already.
        for e in newer {
            let tail = tr.entries.len().saturating_sub(4);
            if !tr.entries[tail..].contains(&e) {
                tr.entries.push(e);
            }
        }
        out
    }
}
