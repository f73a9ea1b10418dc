//! The app's state, driven by events as the terminal and the network
//! would drive it.

use super::app::*;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

fn key(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn typed(app: &mut App, text: &str) -> Vec<Action> {
    let mut out = vec![];
    for c in text.chars() {
        out.extend(app.update(key(KeyCode::Char(c))));
    }
    out
}

fn online(conv: &str) -> App {
    let mut app = App::new(conv);
    app.update(Event::Online);
    app
}

#[test]
fn going_online_subscribes_again_and_fetches_the_list_and_history() {
    let mut app = App::new("tui");
    assert_eq!(app.link, Link::Connecting);
    let out = app.update(Event::Online);
    assert_eq!(
        out,
        vec![
            Action::Send(json!({"type": "subscribe", "conversation": "tui"})),
            Action::Refresh,
            Action::History(Target::Api("tui".into())),
        ]
    );
    app.update(Event::Offline("connection refused".into()));
    assert_eq!(app.link, Link::Offline("connection refused".into()));
}

#[test]
fn enter_sends_the_line_and_a_streamed_reply_becomes_the_assistants() {
    let mut app = online("tui");
    assert!(typed(&mut app, "hello there").is_empty());
    let out = app.update(key(KeyCode::Enter));
    assert_eq!(
        out,
        vec![Action::Send(
            json!({"type": "send", "conversation": "tui", "text": "hello there"})
        )]
    );
    assert!(app.input.is_empty());
    let t = Target::Api("tui".into());
    app.update(Event::Frame(
        json!({"type": "delta", "conversation": "tui", "text": "Hel"}),
    ));
    app.update(Event::Frame(
        json!({"type": "delta", "conversation": "tui", "text": "lo"}),
    ));
    assert_eq!(app.transcript(&t).unwrap().streaming, "Hello");
    app.update(Event::Frame(
        json!({"type": "message", "conversation": "tui", "id": "1", "text": "Hello!"}),
    ));
    let tr = app.transcript(&t).unwrap();
    assert!(tr.streaming.is_empty());
    assert_eq!(
        tr.entries,
        vec![
            Entry {
                role: Role::You,
                text: "hello there".into()
            },
            Entry {
                role: Role::Assistant,
                text: "Hello!".into()
            },
        ]
    );
    // Not streamed: a task result or a tool's message, shown dimmed.
    app.update(Event::Frame(
        json!({"type": "message", "conversation": "tui", "id": "2", "text": "Reminder"}),
    ));
    assert_eq!(app.transcript(&t).unwrap().entries[2].role, Role::Delivered);
}

#[test]
fn a_tool_call_is_one_dimmed_line_updated_as_it_goes() {
    let mut app = online("tui");
    let t = Target::Api("tui".into());
    let tool = |status: &str| {
        Event::Frame(
            json!({"type": "tool", "conversation": "tui", "part": "prt_1",
                            "tool": "bash", "status": status}),
        )
    };
    app.update(tool("running"));
    app.update(tool("completed"));
    let tr = app.transcript(&t).unwrap();
    assert_eq!(
        tr.entries,
        vec![Entry {
            role: Role::Tool,
            text: "⚙ bash completed".into()
        }]
    );
}

#[test]
fn offline_the_line_is_kept_not_lost() {
    let mut app = App::new("tui");
    app.update(Event::Offline("refused".into()));
    typed(&mut app, "keep me");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(app.input, "keep me");
    assert!(app.notice.as_deref().unwrap().contains("offline"));
    app.update(Event::Online);
    assert_eq!(app.update(key(KeyCode::Enter)).len(), 1);
    assert!(app.input.is_empty());
}

#[test]
fn an_approval_pops_up_whole_and_y_a_n_answer_it() {
    let mut app = online("tui");
    let long = format!("echo {}", "x".repeat(300));
    let frame = |code: &str| {
        json!({"type": "approval", "code": code, "chat": "api:tui",
               "permission": "bash", "patterns": [long.clone()]})
    };
    app.update(Event::Frame(frame("1234")));
    // The same request again (a reconnected socket shows it again): once.
    app.update(Event::Frame(frame("1234")));
    app.update(Event::Frame(frame("5678")));
    assert_eq!(app.approvals.len(), 2);
    assert_eq!(app.approvals[0].detail, vec![long.clone()]);
    // Typing goes to the pop-up, not the input line.
    assert!(typed(&mut app, "x").is_empty());
    assert!(app.input.is_empty());
    assert_eq!(
        app.update(key(KeyCode::Char('y'))),
        vec![Action::Send(
            json!({"type": "answer", "code": "1234", "answer": "yes"})
        )]
    );
    assert_eq!(
        app.update(key(KeyCode::Char('a'))),
        vec![Action::Send(
            json!({"type": "answer", "code": "5678", "answer": "always"})
        )]
    );
    assert!(app.approvals.is_empty());
    app.update(Event::Frame(frame("9999")));
    assert_eq!(
        app.update(key(KeyCode::Char('n'))),
        vec![Action::Send(
            json!({"type": "answer", "code": "9999", "answer": "no"})
        )]
    );
}

#[test]
fn the_whole_command_is_shown_when_the_bridge_sends_it() {
    let mut app = online("tui");
    app.update(Event::Frame(json!({"type": "approval", "code": "1234",
        "chat": "api:tui", "permission": "bash", "patterns": ["a", "b"],
        "detail": "a && b"})));
    assert_eq!(app.approvals[0].detail, vec!["a && b".to_owned()]);
}

#[test]
fn a_line_sent_while_the_history_loads_is_kept() {
    let mut app = App::new("tui");
    let t = Target::Api("tui".into());
    app.update(Event::Online);
    typed(&mut app, "new line");
    app.update(key(KeyCode::Enter));
    // The history asked for on connecting arrives after the line was sent.
    app.update(Event::History(
        t.clone(),
        vec![
            json!({"direction": "in", "text": "old"}),
            json!({"direction": "out", "text": "old reply"}),
        ],
    ));
    let texts: Vec<&str> = app
        .transcript(&t)
        .unwrap()
        .entries
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(texts, vec!["old", "old reply", "new line"]);
}

#[test]
fn an_approval_is_not_answered_offline() {
    let mut app = App::new("tui");
    app.update(Event::Frame(json!({"type": "approval", "code": "1234",
        "chat": "api:tui", "permission": "bash", "patterns": ["ls"]})));
    assert!(app.update(key(KeyCode::Char('y'))).is_empty());
    assert_eq!(app.approvals.len(), 1);
}

#[test]
fn help_opens_on_question_mark_with_an_empty_line_only() {
    let mut app = online("tui");
    app.update(key(KeyCode::Char('?')));
    assert!(app.help);
    app.update(key(KeyCode::Esc));
    assert!(!app.help);
    typed(&mut app, "why?");
    assert_eq!(app.input, "why?");
    assert!(!app.help);
}

#[test]
fn the_link_frame_sets_the_whatsapp_state() {
    let mut app = online("tui");
    app.update(Event::Frame(json!({"type": "link", "up": false,
        "code": "whatsapp-reconnecting", "message": "lost"})));
    assert_eq!(app.whatsapp.as_deref(), Some("whatsapp-reconnecting"));
}

#[test]
fn a_keys_unnamed_conversation_takes_the_name_the_bridge_gives() {
    let mut app = App::new("");
    let out = app.update(Event::Online);
    assert_eq!(
        out,
        vec![
            Action::Send(json!({"type": "subscribe", "conversation": null})),
            Action::Refresh,
        ]
    );
    typed(&mut app, "early");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(app.input, "early");
    let out = app.update(Event::Frame(
        json!({"type": "subscribed", "conversation": "laptop"}),
    ));
    let laptop = Target::Api("laptop".into());
    assert_eq!(out, vec![Action::History(laptop.clone())]);
    assert_eq!(app.selected, laptop);
    assert_eq!(app.rows[0].name, "laptop");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Action::Send(
            json!({"type": "send", "conversation": "laptop", "text": "early"})
        )]
    );
}

#[test]
fn ctrl_c_quits() {
    let mut app = online("tui");
    let out = app.update(Event::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(out, vec![Action::Quit]);
    assert!(app.quitting());
}

#[test]
fn the_list_holds_api_conversations_and_the_owners_chats_and_picks_one() {
    let mut app = online("tui");
    app.update(Event::Conversations(vec!["desk".into(), "tui".into()]));
    app.update(Event::Status(json!({
        "live": {"link": {"code": "whatsapp-connected"}, "runs_active": 1,
                 "queue": [{"chat": "x", "phase": "running"}]},
    })));
    let ann_at = |at: i64, unread: u64, last_seq: i64| {
        json!({"chat": "491511111111@s.whatsapp.net", "name": "Ann",
               "kind": "whatsapp", "conversation": null, "last_activity": at,
               "unread": unread, "last_seq": last_seq})
    };
    let desk = json!({"chat": "api:desk", "name": "desk", "kind": "api",
                      "conversation": "desk", "last_activity": 7, "unread": 4});
    // A WhatsApp chat's count is the bridge's (it survives the app); an
    // API conversation's is the app's own.
    assert!(
        app.update(Event::Chats(vec![ann_at(5, 2, 10), desk.clone()]))
            .is_empty()
    );
    assert_eq!(app.rows[2].unread, 2);
    assert!(
        app.update(Event::Chats(vec![ann_at(9, 3, 12), desk]))
            .is_empty()
    );
    assert_eq!((app.rows[2].unread, app.rows[1].unread), (3, 0));
    app.update(Event::Chats(vec![json!({"chat": "api:tui", "name": "tui",
        "kind": "api", "conversation": "tui", "model": "openai/gpt-x"})]));
    assert_eq!(app.rows[0].model.as_deref(), Some("openai/gpt-x"));
    let names: Vec<&str> = app.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["tui", "desk", "Ann"]);
    assert_eq!(app.whatsapp.as_deref(), Some("whatsapp-connected"));
    assert_eq!((app.runs_active, app.queued), (1, 1));

    // A message in a conversation not shown counts as unread.
    app.update(Event::Frame(
        json!({"type": "message", "conversation": "desk", "id": "1", "text": "hi"}),
    ));
    assert_eq!(app.rows[1].unread, 1);

    // Tab to the list, down twice, Enter: Ann's history, read-only.
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    let ann = Target::Chat("491511111111@s.whatsapp.net".into());
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Action::History(ann.clone())]
    );
    assert_eq!(app.selected, ann);
    assert_eq!(app.focus, Focus::Input);
    typed(&mut app, "hi Ann");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(app.notice.as_deref().unwrap().contains("read-only"));
    // Its history read: the mark moves to its newest message.
    let out = app.update(Event::History(
        ann.clone(),
        vec![
            json!({"direction": "in", "text": "hello", "seq": 12}),
            json!({"direction": "out", "text": "Andy: hi"}),
        ],
    ));
    assert_eq!(out, vec![Action::Read(ann.clone(), 12)]);
    assert_eq!(app.transcript(&ann).unwrap().entries.len(), 2);
    assert_eq!(app.rows[2].unread, 0);
    // The bridge has not seen the mark yet: no second fetch for it.
    assert!(app.update(Event::Chats(vec![ann_at(9, 3, 12)])).is_empty());
    // A new message while it is open: fetched, then read.
    assert_eq!(
        app.update(Event::Chats(vec![ann_at(11, 1, 14)])),
        vec![Action::History(ann.clone())]
    );
    // Asked already: not again while the answer is on its way.
    assert!(app.update(Event::Chats(vec![ann_at(11, 1, 14)])).is_empty());
    let out = app.update(Event::History(
        ann.clone(),
        vec![
            json!({"direction": "in", "text": "hello", "seq": 12}),
            json!({"direction": "out", "text": "Andy: hi"}),
            json!({"direction": "in", "text": "are you there?", "seq": 14}),
        ],
    ));
    assert_eq!(out, vec![Action::Read(ann.clone(), 14)]);
    assert_eq!(app.transcript(&ann).unwrap().entries.len(), 3);
    // The same history again moves nothing.
    assert!(
        app.update(Event::History(
            ann.clone(),
            vec![json!({"direction": "in", "text": "are you there?", "seq": 14}),]
        ))
        .is_empty()
    );

    // Back to desk: subscribed, history fetched, unread cleared.
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Up));
    let desk = Target::Api("desk".into());
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![
            Action::Send(json!({"type": "subscribe", "conversation": "desk"})),
            Action::History(desk.clone()),
        ]
    );
    assert_eq!(app.rows[1].unread, 0);
}

#[test]
fn p_in_the_link_pop_up_takes_a_number_and_the_pairing_code_is_shown() {
    let mut app = online("tui");
    app.update(key(KeyCode::F(2)));
    assert!(app.show_qr);
    app.update(key(KeyCode::Char('p')));
    assert_eq!(app.phone.as_deref(), Some(""));
    // Typed keys go to the number (`?`, `q` and F2 too), not the input line.
    assert!(typed(&mut app, "+49 151 1234x?q").is_empty());
    app.update(key(KeyCode::F(2)));
    assert!(app.show_qr && !app.help && !app.quitting());
    assert_eq!(app.phone.as_deref(), Some("+49 151 1234x?q"));
    assert!(app.input.is_empty());
    for _ in 0..3 {
        app.update(key(KeyCode::Backspace));
    }
    // Offline, Enter keeps the number.
    app.update(Event::Offline("refused".into()));
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(app.phone.as_deref(), Some("+49 151 1234"));
    assert!(app.link_note.as_deref().unwrap().contains("offline"));
    app.update(Event::Online);
    let out = app.update(key(KeyCode::Enter));
    assert_eq!(out, vec![Action::Link(Some("+49 151 1234".into()))]);
    assert_eq!(app.phone, None);
    // The bridge's refusal is shown as it said it.
    app.update(Event::Linked(Err(
        "refused (400 Bad Request): phone: expected ... 7 to 15 digits".into(),
    )));
    assert!(app.link_note.as_deref().unwrap().contains("7 to 15 digits"));
    // Asked: the code comes with the answer or in a later link frame.
    app.update(Event::Linked(Ok(
        json!({"up": false, "code": "whatsapp-pairing",
        "message": "asking WhatsApp for a pairing code for +4915112345678",
        "pairing": null, "started": true}),
    )));
    assert_eq!(app.pair_code, None);
    assert!(app.link_note.as_deref().unwrap().contains("shows here"));
    app.update(Event::Frame(json!({"type": "link", "up": false,
        "code": "whatsapp-pairing", "message": "enter it", "qr": null, "pair_code": "ABCD1234"})));
    assert_eq!(app.pair_code.as_deref(), Some("ABCD1234"));
    assert_eq!(app.whatsapp.as_deref(), Some("whatsapp-pairing"));
    // Linked: no code any more; Esc closes the pop-up.
    app.update(Event::Frame(json!({"type": "link", "up": true,
        "code": "whatsapp-connected", "message": "ok", "qr": null, "pair_code": null})));
    assert_eq!(app.pair_code, None);
    app.update(key(KeyCode::Esc));
    assert!(!app.show_qr);
    // Outside the pop-up, `p` is a letter of the line.
    typed(&mut app, "p");
    assert_eq!(app.input, "p");
    // Esc while typing a number cancels the number, not the pop-up.
    app.update(key(KeyCode::F(2)));
    app.update(key(KeyCode::Char('p')));
    app.update(key(KeyCode::Esc));
    assert_eq!((app.phone.as_deref(), app.show_qr), (None, true));
}
