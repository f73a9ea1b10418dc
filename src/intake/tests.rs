use super::*;
use crate::queue::RetryPolicy;

fn jid(s: &str) -> ChatJid {
    ChatJid::parse(s).unwrap()
}

fn intake(dir: &std::path::Path, auto: bool) -> Intake {
    let store = Store::open(&dir.join("pb.sqlite3")).unwrap();
    let queue = ChatQueue::new(
        1,
        RetryPolicy {
            base: std::time::Duration::from_secs(1),
            max_delay: std::time::Duration::from_secs(1),
            attempts: 1,
        },
    );
    let persona = Persona {
        name: "Andy".into(),
        own_number: false,
    };
    let i = Intake::new(store, queue, persona);
    if auto {
        i.with_owner_chat(OwnerChat {
            workspace: dir.join("ws"),
        })
    } else {
        i
    }
}

#[test]
fn an_unregistered_chat_is_named_once_then_again_when_forgotten() {
    let mut a = Announced::new();
    let now = a.since;
    let (x, y) = (jid(OWN), jid("491519999999@s.whatsapp.net"));
    assert!(a.first(&x, now));
    assert!(!a.first(&x, now));
    assert!(a.first(&y, now));
    // An hour on, every chat is named again.
    let later = now + ANNOUNCE_AGAIN;
    assert!(a.first(&x, later));
    assert!(!a.first(&x, later));
    // Past the cap, the remembered chats are forgotten.
    for n in 0..ANNOUNCE_MAX {
        a.first(&jid(&format!("49{n:010}@s.whatsapp.net")), later);
    }
    assert!(a.chats.len() <= ANNOUNCE_MAX);
    assert!(a.first(&y, later));
}

const OWN: &str = "491511234567@s.whatsapp.net";
const LID: &str = "100000000000001@lid";

#[tokio::test]
async fn pairing_makes_the_own_chat_the_main_chat_once() {
    let dir = tempfile::tempdir().unwrap();
    let i = intake(dir.path(), true);
    assert!(i.paired(jid(OWN), Some(jid(LID))).await.unwrap());
    let reg = i.store.registered(&jid(OWN)).await.unwrap().unwrap();
    assert!(reg.is_main);
    assert_eq!(reg.trigger, TriggerRule::Always);
    assert!(dir.path().join("ws/chats/main/AGENTS.md").is_file());
    // A message in "Message yourself" arriving under the LID is the main chat's.
    assert_eq!(
        i.store.registered(&jid(LID)).await.unwrap().map(|r| r.jid),
        Some(jid(OWN))
    );
    // Pairing again changes nothing.
    assert!(!i.paired(jid(OWN), None).await.unwrap());
}

#[tokio::test]
async fn a_registered_main_chat_or_auto_main_off_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let i = intake(dir.path(), true);
    i.store
        .register(RegisteredChat {
            jid: jid("491519999999@s.whatsapp.net"),
            name: "Other".into(),
            folder: Folder::parse("other").unwrap(),
            is_main: true,
            trigger: TriggerRule::Always,
            profile: crate::model::Profile::Main,
        })
        .await
        .unwrap();
    assert!(!i.paired(jid(OWN), None).await.unwrap());
    assert!(i.store.registered(&jid(OWN)).await.unwrap().is_none());

    let dir = tempfile::tempdir().unwrap();
    let off = intake(dir.path(), false);
    assert!(!off.paired(jid(OWN), None).await.unwrap());
    assert!(off.store.registered(&jid(OWN)).await.unwrap().is_none());
}

#[tokio::test]
async fn only_a_message_that_can_start_a_run_wakes_its_chat() {
    let dir = tempfile::tempdir().unwrap();
    let i = intake(dir.path(), false);
    let group = jid("120363000000000001@g.us");
    let dm = jid("491510000000001@s.whatsapp.net");
    for (chat, name, trigger) in [
        (&group, "team", TriggerRule::Mention),
        (&dm, "ann", TriggerRule::Always),
    ] {
        i.store
            .register(RegisteredChat {
                jid: chat.clone(),
                name: name.into(),
                folder: Folder::parse(name).unwrap(),
                is_main: false,
                trigger,
                profile: crate::model::Profile::Member,
            })
            .await
            .unwrap();
    }
    let msg = |chat: &ChatJid, id: &str, text: &str| Inbound {
        chat: chat.clone(),
        chat_name: None,
        id: crate::ids::MessageId::new(id),
        sender: "491510000000002@s.whatsapp.net".into(),
        sender_name: None,
        text: text.into(),
        timestamp_ms: 1,
        from_me: false,
        media: None,
    };
    let queued =
        |i: &Intake| -> Vec<ChatJid> { i.queue.snapshot().into_iter().map(|(c, _)| c).collect() };

    // Group chatter is stored as context and wakes nothing.
    let out = i.accept(msg(&group, "g1", "lunch at 12?")).await.unwrap();
    assert!(out.registered && !out.duplicate);
    assert!(queued(&i).is_empty());
    // A DM wakes its chat on anything; the group's trigger wakes the group.
    i.accept(msg(&dm, "d1", "hi")).await.unwrap();
    assert_eq!(queued(&i), vec![dm.clone()]);
    i.accept(msg(&group, "g2", "@andy, what do you think?"))
        .await
        .unwrap();
    assert_eq!(queued(&i), vec![group.clone(), dm]);
    // The chatter is still pending, for the run the trigger starts.
    let pending = i.store.pending_messages(&group, 10).await.unwrap();
    assert_eq!(pending.len(), 2);
}
