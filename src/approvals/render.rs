//! What the owner reads: a request shown verbatim (every character
//! readable, nothing able to end its code block), in numbered parts when it
//! is long.

use super::*;

/// Rules as the owner reads them: one a line, an exact rule without its `=`.
pub(super) fn rules_lines(rules: &[String]) -> String {
    rules
        .iter()
        .map(|r| r.strip_prefix('=').unwrap_or(r))
        .collect::<Vec<_>>()
        .join("\n")
}

/// "run a shell command", for people.
pub(super) fn what(permission: &str) -> String {
    match permission {
        "bash" => "run a shell command".into(),
        "edit" => "change a file".into(),
        "read" => "read a file".into(),
        "webfetch" => "fetch a web page".into(),
        "external_directory" => "reach outside its folder".into(),
        other => format!("use {other}"),
    }
}

/// The most characters a request (and, separately, the rules "always"
/// would store) may have as shown by [`verbatim`]; a longer one is refused
/// without asking the owner.
pub const MAX_SHOWN: usize = 4000;
/// The most characters of shown code in one message.
pub(super) const PART_MAX: usize = 1500;
/// The fewest characters of code per part, however small the messages.
pub(super) const PART_MIN: usize = 40;
/// What a part's label and fences cost at most (`Part 99/99:` + fences).
pub(super) const PART_FRAME: usize = 24;

/// `text` as the owner is shown it: every character readable, nothing
/// hidden, nothing able to end the code block it is shown in. A backslash is
/// shown as `\\`, a line break as `\n`, a tab as `\t`, a carriage return as
/// `\r`; a backtick, a control character, a space other than the plain one,
/// an invisible or formatting character (zero-width, bidirectional
/// controls, variation selectors, tags, fillers), a private-use character
/// and a right-to-left letter (which would reorder the text around it) as
/// `\uXXXX` (or `\UXXXXXXXX` beyond four hex digits), and so is a space
/// at the very start or end.
pub fn verbatim(text: &str) -> String {
    shown_units(text).concat()
}

/// [`verbatim`]'s output, one unit per grapheme cluster of `text`: parts
/// are cut between units, so no escape and no cluster is ever cut in two.
pub(super) fn shown_units(text: &str) -> Vec<String> {
    let mut units: Vec<String> = text
        .graphemes(true)
        .map(|g| {
            let mut unit = String::new();
            for c in g.chars() {
                match c {
                    '\\' => unit.push_str("\\\\"),
                    '\n' => unit.push_str("\\n"),
                    '\t' => unit.push_str("\\t"),
                    '\r' => unit.push_str("\\r"),
                    c if must_escape(c) => {
                        let n = c as u32;
                        if n <= 0xFFFF {
                            let _ = write!(unit, "\\u{n:04x}");
                        } else {
                            let _ = write!(unit, "\\U{n:08x}");
                        }
                    }
                    c => unit.push(c),
                }
            }
            unit
        })
        .collect();
    // A space at either end could not be seen.
    for at in [0, units.len().saturating_sub(1)] {
        if units.get(at).is_some_and(|u| u == " ") {
            units[at] = "\\u0020".into();
        }
    }
    units
}

/// Characters [`verbatim`] shows as an escape (besides `\`, `\n`, `\t`, `\r`).
pub(super) fn must_escape(c: char) -> bool {
    let n = c as u32;
    c == '`'
        || c.is_control()
        || (c.is_whitespace() && c != ' ')
        || n & 0xFFFE == 0xFFFE
        || matches!(
            n,
            // Soft hyphen, combining grapheme joiner, Hangul and Khmer
            // fillers, Mongolian selectors, zero-width and bidirectional
            // controls, word joiners and invisible operators, braille blank,
            // variation selectors, byte order mark, specials.
            0x00AD
                | 0x034F
                | 0x115F
                | 0x1160
                | 0x17B4
                | 0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x2800
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0xFDD0..=0xFDEF
                // Other format characters.
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                // Tags and variation selectors supplement.
                | 0xE0000..=0xE0FFF
                // Private use.
                | 0xE000..=0xF8FF
                | 0xF0000..=0x10FFFF
                // Right-to-left scripts (Hebrew, Arabic, Syriac, Thaana,
                // N'Ko, Samaritan, Mandaic, and their presentation forms).
                | 0x0590..=0x08FF
                | 0xFB1D..=0xFDCF
                | 0xFDF0..=0xFDFF
                | 0xFE70..=0xFEFE
                | 0x10800..=0x10FFF
                | 0x1E800..=0x1EFFF
        )
}

/// A piece of an approval request: text as written, or text shown in a code
/// block by [`verbatim`].
pub(super) enum Piece {
    Text(String),
    Code(String),
}

/// `pieces` as messages of at most `budget` characters: a code block that
/// does not fit is cut (between [`shown_units`]) into parts labelled
/// `Part i/n:`, each in its own block, and blocks are joined into messages
/// as long as they fit.
pub(super) fn pack(pieces: Vec<Piece>, budget: usize) -> Vec<String> {
    let part = budget.saturating_sub(PART_FRAME).clamp(PART_MIN, PART_MAX);
    let mut blocks = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => blocks.push(Block { text, part: false }),
            Piece::Code(code) => {
                let units = shown_units(&code);
                let shown: usize = units.iter().map(|u| u.chars().count()).sum();
                if shown <= part {
                    blocks.push(Block {
                        text: format!("```\n{}\n```", units.concat()),
                        part: false,
                    });
                    continue;
                }
                let parts = cut(&units, part);
                let total = parts.len();
                for (i, p) in parts.into_iter().enumerate() {
                    blocks.push(Block {
                        text: format!("Part {}/{total}:\n```\n{p}\n```", i + 1),
                        part: true,
                    });
                }
            }
        }
    }
    // Each part gets a message of its own; text joins a neighbour that fits.
    let mut out: Vec<(String, bool)> = Vec::new();
    for block in blocks {
        match out.last_mut() {
            Some((last, has_part))
                if !(block.part && *has_part)
                    && last.chars().count() + 1 + block.text.chars().count() <= budget =>
            {
                last.push('\n');
                last.push_str(&block.text);
                *has_part |= block.part;
            }
            _ => out.push((block.text, block.part)),
        }
    }
    out.into_iter().map(|(text, _)| text).collect()
}

/// A block of a message: text, or one part of a long code block.
pub(super) struct Block {
    text: String,
    part: bool,
}

/// `units` cut into parts of at most `max` characters (a single unit
/// longer than that alone). A cut is moved back a little so that no part
/// begins or ends with a space, which the reader could not see there.
pub(super) fn cut(units: &[String], max: usize) -> Vec<String> {
    let width = |u: &String| u.chars().count();
    let space = |i: usize| units[i] == " ";
    let mut parts = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let (mut j, mut len) = (i, 0);
        while j < units.len() && (j == i || len + width(&units[j]) <= max) {
            len += width(&units[j]);
            j += 1;
        }
        if j < units.len() {
            let mut k = j;
            while k > i + 1 && j - k < 32 && (space(k - 1) || space(k)) {
                k -= 1;
            }
            if !space(k - 1) && !space(k) {
                j = k;
            }
        }
        parts.push(units[i..j].concat());
        i = j;
    }
    parts
}

/// The messages the owner gets (one, unless the request is long): what the
/// chat asks for, in full, then how to answer, then what "always" would
/// allow, each message at most `budget` characters.
pub(super) fn ask_messages(
    reg: &RegisteredChat,
    ask: &PermissionAsk,
    approval: &Approval,
    timeout: Duration,
    budget: usize,
) -> Vec<String> {
    let code = &approval.code;
    let minutes = timeout.as_secs().div_ceil(60).max(1);
    let mut pieces = vec![
        Piece::Text(format!(
            "Approval needed: chat \"{}\" ({}) wants to {}:",
            reg.name,
            reg.profile,
            what(&ask.permission)
        )),
        Piece::Code(ask.detail.clone()),
        Piece::Text(format!(
            "Reply \"yes {code}\", \"always {code}\" or \"no {code}\" within {minutes} min."
        )),
    ];
    let exact = ask.permission == "bash" && approval.always == [format!("={}", ask.detail)];
    if exact {
        pieces.push(Piece::Text(format!(
            "\"always {code}\" also allows exactly this command from now on."
        )));
    } else if !approval.always.is_empty() {
        pieces.push(Piece::Text(format!(
            "\"always {code}\" also allows from now on (one rule a line):"
        )));
        pieces.push(Piece::Code(rules_lines(&approval.always)));
    }
    pack(pieces, budget)
}
