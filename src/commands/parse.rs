//! Reading a chat command out of a message: `/help`, `/status`, ...,
//! addressed to the assistant in a group.

use super::*;

/// A command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    New,
    Stop { all: bool },
    Status,
    Model(Option<String>),
    Compact,
    Tasks { cancel: Option<String> },
}

/// Every command word, in `/help` order, with its line.
pub(super) const HELP: &[(&str, &str, bool)] = &[
    ("help", "/help: this list", false),
    (
        "status",
        "/status: this chat's model, session, queue and last turn",
        false,
    ),
    (
        "new",
        "/new: start a fresh session (memory files stay)",
        true,
    ),
    (
        "stop",
        "/stop: stop the running turn (/stop all: and drop what waits)",
        true,
    ),
    (
        "model",
        "/model: list models; /model provider/model sets this chat's, /model default clears it",
        true,
    ),
    (
        "compact",
        "/compact: summarise the session so it stays short",
        true,
    ),
    (
        "tasks",
        "/tasks: this chat's scheduled tasks; /tasks cancel ID",
        true,
    ),
];

impl Command {
    /// Whether only the owner and allowed senders may use it.
    pub(super) fn restricted(&self) -> bool {
        !matches!(self, Command::Help | Command::Status)
    }
}

/// Reads a command from `text` in `chat`: the trigger first in a group
/// (its `@name` or prefix; the main chat and direct chats need none), then
/// `/word`. `None`: not a command (an unknown word included), so the
/// message is the agent's as before. `Some(Err)`: a known command with
/// arguments it does not take.
pub fn parse(
    reg: &RegisteredChat,
    text: &str,
    assistant_name: &str,
) -> Option<Result<Command, String>> {
    let mut t = text.trim();
    if reg.jid.is_group() && !reg.is_main {
        t = match &reg.trigger {
            TriggerRule::Always => strip_mention(t, assistant_name).unwrap_or(t),
            TriggerRule::Mention => strip_mention(t, assistant_name)?,
            TriggerRule::Prefix(p) => strip_ci(t, p)?.trim_start(),
        };
    } else {
        t = strip_mention(t, assistant_name).unwrap_or(t);
    }
    let rest = t.strip_prefix('/')?;
    let (word, args) = match rest.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (rest, ""),
    };
    let word = word.to_ascii_lowercase();
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(format!("/{word} takes no arguments"))
        }
    };
    Some(match word.as_str() {
        "help" => none(Command::Help),
        "new" => none(Command::New),
        "status" => none(Command::Status),
        "compact" => none(Command::Compact),
        "stop" => match args {
            "" => Ok(Command::Stop { all: false }),
            a if a.eq_ignore_ascii_case("all") => Ok(Command::Stop { all: true }),
            _ => Err("use /stop or /stop all".into()),
        },
        "model" => Ok(Command::Model((!args.is_empty()).then(|| args.to_owned()))),
        "tasks" => {
            let mut it = args.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (None, _, _) => Ok(Command::Tasks { cancel: None }),
                (Some(c), Some(id), None) if c.eq_ignore_ascii_case("cancel") => {
                    Ok(Command::Tasks {
                        cancel: Some(id.to_owned()),
                    })
                }
                _ => Err("use /tasks or /tasks cancel ID".into()),
            }
        }
        _ => return None,
    })
}

/// `text` after `@name` (and what separates them), if it starts so.
pub(super) fn strip_mention<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = strip_ci(text.strip_prefix('@')?, name)?;
    if rest
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    Some(rest.trim_start_matches([',', ':']).trim_start())
}

pub(super) fn strip_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}
