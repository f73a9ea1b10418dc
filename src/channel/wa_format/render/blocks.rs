//! The [`Writer`]'s blocks: list markers, task boxes, code blocks and
//! tables.

use super::super::FENCE;
use super::{Container, Writer};

#[derive(Default)]
pub(super) struct Table {
    pub(super) head: Vec<String>,
    pub(super) row: Vec<String>,
    pub(super) rows: usize,
}

impl Writer<'_> {
    pub(super) fn item_marker(&mut self, at: usize) -> String {
        match self.lists.last_mut() {
            Some(Some(next)) => {
                let number = *next;
                *next += 1;
                let after_digits = self.src[at..]
                    .trim_start()
                    .trim_start_matches(|c: char| c.is_ascii_digit());
                let delimiter = if after_digits.starts_with(')') {
                    ')'
                } else {
                    '.'
                };
                format!("{number}{delimiter} ")
            }
            _ => "- ".to_string(),
        }
    }

    pub(super) fn task(&mut self, done: bool) {
        let mark = if done { '☑' } else { '☐' };
        match self.containers.last_mut() {
            Some(Container::Item {
                marker: Some(marker),
                ..
            }) => {
                if marker == "- " {
                    marker.clear();
                }
                marker.push(mark);
                marker.push(' ');
            }
            _ => self.put(&format!("{mark} ")),
        }
    }

    /// A code block, its fences at the start of their lines.
    pub(super) fn code_block(&mut self, code: &str) {
        let marker_pending = self.containers.iter().any(|c| {
            matches!(
                c,
                Container::Item {
                    marker: Some(_),
                    ..
                }
            )
        });
        if marker_pending {
            // An item that opens with code: its marker gets a line.
            self.start_line();
        }
        if self.line_open {
            self.breaks = self.breaks.max(1);
        }
        self.flush_breaks();
        let body = code.strip_suffix('\n').unwrap_or(code);
        self.out.push_str(FENCE);
        self.out.push('\n');
        if !body.is_empty() {
            self.out.push_str(body);
            self.out.push('\n');
        }
        self.out.push_str(FENCE);
        self.line_open = true;
    }

    pub(super) fn table_row(&mut self) {
        let Some(table) = &mut self.table else {
            return;
        };
        table.rows += 1;
        let parts: Vec<String> = table
            .row
            .iter()
            .enumerate()
            .filter(|(_, value)| !value.is_empty())
            .map(|(k, value)| match table.head.get(k) {
                Some(label) if !label.is_empty() => format!("{label}: {value}"),
                _ => value.clone(),
            })
            .collect();
        table.row.clear();
        self.table_line(&parts.join(", "));
    }

    pub(super) fn table_line(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if self.line_open {
            self.breaks = self.breaks.max(1);
        }
        self.put(line);
    }
}
