use super::*;
use crate::ids::Folder;
use crate::model::Profile;

fn chat(jid: &str, is_main: bool, trigger: TriggerRule) -> RegisteredChat {
    RegisteredChat {
        jid: ChatJid::parse(jid).unwrap(),
        name: "x".into(),
        folder: Folder::parse("x").unwrap(),
        is_main,
        trigger,
        profile: Profile::Member,
    }
}

#[test]
fn commands_are_read_after_the_trigger_and_unknown_words_are_the_agents() {
    let dm = chat("12@s.whatsapp.net", false, TriggerRule::Mention);
    let group = chat("1-2@g.us", false, TriggerRule::Mention);
    let prefixed = chat("1-3@g.us", false, TriggerRule::Prefix("!ai".into()));
    let p = |r: &RegisteredChat, t: &str| parse(r, t, "Andy");
    assert_eq!(p(&dm, "/new"), Some(Ok(Command::New)));
    assert_eq!(p(&dm, "  /HELP  "), Some(Ok(Command::Help)));
    assert_eq!(p(&dm, "@Andy /status"), Some(Ok(Command::Status)));
    assert_eq!(p(&dm, "/stop all"), Some(Ok(Command::Stop { all: true })));
    assert_eq!(
        p(&dm, "/model openai/gpt-5"),
        Some(Ok(Command::Model(Some("openai/gpt-5".into()))))
    );
    assert_eq!(
        p(&dm, "/tasks cancel task-1"),
        Some(Ok(Command::Tasks {
            cancel: Some("task-1".into())
        }))
    );
    assert!(matches!(p(&dm, "/new please"), Some(Err(_))));
    assert!(matches!(p(&dm, "/stop now"), Some(Err(_))));
    assert_eq!(p(&dm, "/weather in Berlin"), None);
    assert_eq!(p(&dm, "what does /new do?"), None);
    assert_eq!(p(&dm, "/"), None);
    // A group needs its trigger first.
    assert_eq!(p(&group, "/new"), None);
    assert_eq!(p(&group, "@Andy /new"), Some(Ok(Command::New)));
    assert_eq!(
        p(&group, "@andy, /stop"),
        Some(Ok(Command::Stop { all: false }))
    );
    assert_eq!(p(&group, "@Andyson /new"), None);
    assert_eq!(p(&prefixed, "!ai /status"), Some(Ok(Command::Status)));
    assert_eq!(p(&prefixed, "@Andy /status"), None);
}

#[test]
fn durations_read_as_people_say_them() {
    assert_eq!(ago(42_000), "42 s");
    assert_eq!(ago(5 * 60_000), "5 min");
    assert_eq!(ago(3 * 3_600_000), "3 h");
    assert_eq!(ago(2 * 86_400_000), "2 days");
}
