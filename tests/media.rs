//! Media end to end: photos, voice notes and files through the fake
//! channel, a real `opencode serve` with the real plugin, and the scripted
//! model (which also plays the transcription endpoint).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::model::Transcription;
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
const GROUP: &str = "120363000000000001@g.us";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

/// A real 1×1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Model and OpenCode up, the scripted model declared able to see images
/// (`modalities.input` with `image`, `attachment: true`), as a vision
/// model must be configured for OpenCode to pass image parts on.
async fn vision_world() -> World {
    let mut w = World::without_opencode().await;
    let mut config: Value = serde_json::from_str(&opencode_config(&w.model)).unwrap();
    config["provider"]["scripted"]["models"]["scripted-1"] = json!({
        "name": "Scripted", "tool_call": true, "attachment": true,
        "modalities": {"input": ["text", "image"], "output": ["text"]}
    });
    w.opencode = Some(OpenCode::start_with(
        &w.workspace(),
        &w.home(),
        &w.model,
        0,
        config.to_string(),
    ));
    w
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn png() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap()
}

/// The first `path="..."` value in a text.
fn path_in(text: &str) -> Option<String> {
    let at = text.find("path=\"")? + 6;
    Some(text[at..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn a_photo_reaches_the_model_as_an_image_part_and_its_path_is_in_the_prompt() {
    let mut w = vision_world().await;
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("what is this"),
        vec![Reply::text("A tiny picture.")],
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    let (status, body) = w
        .inbox(
            json!({"chat": DM, "sender": DM, "id": "P1", "text": "what is this?",
            "media": {"kind": "image", "mime": "image/png", "data": PNG_B64}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: A tiny picture."]);

    let req = w
        .agent_requests()
        .into_iter()
        .find(|r| r.last_user_text().contains("what is this"))
        .unwrap();
    let text = req.last_user_text();
    let path = path_in(&text).expect("the prompt names the saved path");
    assert!(
        path.starts_with("media/") && path.ends_with("/P1.png"),
        "{text}"
    );
    assert!(text.contains("kind=\"image\" mime=\"image/png\""), "{text}");
    let saved = w.workspace().join("chats/ann").join(&path);
    assert_eq!(std::fs::read(&saved).unwrap(), png());

    // What the OpenAI-compatible provider sent for the file part.
    let parts = req.media_parts();
    assert_eq!(parts.len(), 1, "{parts:#?}");
    assert_eq!(parts[0]["type"], "image_url", "{parts:#?}");
    assert_eq!(
        parts[0]["image_url"]["url"],
        format!("data:image/png;base64,{PNG_B64}"),
        "{parts:#?}"
    );
}

#[tokio::test]
async fn voice_notes_arrive_as_transcripts_or_with_a_note_when_transcription_fails() {
    let mut w = World::new().await;
    w.set_env("PB_TRANSCRIBE_URL", &w.model.base_url());
    w.set_env("PB_TRANSCRIBE_API_KEY", "sk-test-key");
    w.set_env("PB_TRANSCRIBE_TIMEOUT", "3s");
    w.model
        .set_transcription(Transcription::Text("buy milk and <eggs>".into()));
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("[voice note"),
        vec![
            Reply::text("Noted."),
            Reply::text("Noted again."),
            Reply::text("Noted late."),
        ],
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    let ogg = b"OggS\x00\x02fake-opus-bytes".to_vec();
    let (status, body) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "V1",
            "media": {"kind": "voice", "mime": "audio/ogg; codecs=opus", "data": b64(&ogg), "seconds": 12}}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: Noted."]);
    let req = w
        .agent_requests()
        .into_iter()
        .find(|r| r.last_user_text().contains("[voice note"))
        .unwrap();
    let text = req.last_user_text();
    assert!(
        text.contains("[voice note 0:12] buy milk and &lt;eggs&gt;"),
        "{text}"
    );
    assert!(path_in(&text).unwrap().ends_with("/V1.ogg"), "{text}");
    let uploads = w.model.transcriptions();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        uploads[0].authorization.as_deref(),
        Some("Bearer sk-test-key")
    );
    assert!(
        uploads[0]
            .content_type
            .starts_with("multipart/form-data; boundary=")
    );
    assert!(uploads[0].contains(&ogg) && uploads[0].contains(b"whisper-1"));

    // A failing endpoint: the message still goes through, with a note.
    w.model.set_transcription(Transcription::Error(500));
    let (status, _) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "V2",
            "media": {"kind": "voice", "mime": "audio/ogg", "data": b64(&ogg), "seconds": 3}}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(w.wait_outbox(DM, 2, T).await[1], "Andy: Noted again.");
    let req = w
        .agent_requests()
        .into_iter()
        .rfind(|r| r.last_user_text().contains("[voice note 0:03]"))
        .unwrap();
    let text = req.last_user_text();
    assert!(
        text.contains("[voice note 0:03] (transcription failed: endpoint answered 500"),
        "{text}"
    );
    assert!(path_in(&text).unwrap().ends_with("/V2.ogg"), "{text}");

    // A silent endpoint times out (PB_TRANSCRIBE_TIMEOUT): a note again.
    w.model.set_transcription(Transcription::Hang);
    let (status, _) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "V3",
            "media": {"kind": "voice", "mime": "audio/ogg", "data": b64(&ogg), "seconds": 4}}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(w.wait_outbox(DM, 3, T).await[2], "Andy: Noted late.");
    let text = w
        .agent_requests()
        .into_iter()
        .rfind(|r| r.last_user_text().contains("[voice note 0:04]"))
        .unwrap()
        .last_user_text();
    assert!(
        text.contains("[voice note 0:04] (transcription failed: no answer within 3 s"),
        "{text}"
    );
}

#[tokio::test]
async fn without_an_endpoint_a_voice_note_says_so_and_documents_give_name_size_and_type() {
    let mut w = World::new().await;
    w.model
        .always(|r| r.last_role() == "user", Reply::text("Got it."));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    let pdf = b"%PDF-1.7 a tiny pdf".to_vec();
    let (s1, _) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "D1", "text": "the contract",
            "media": {"kind": "document", "mime": "application/pdf", "data": b64(&pdf), "filename": "Contract 2026.pdf"}}))
        .await;
    let (s2, _) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "V1",
            "media": {"kind": "voice", "mime": "audio/ogg", "data": b64(b"OggS\x00"), "seconds": 65}}))
        .await;
    assert_eq!((s1, s2), (202, 202));
    // One run or two, as the messages meet the queue.
    w.wait_agent_request("[voice note", T).await;
    let text: String = w
        .agent_requests()
        .iter()
        .map(ChatRequest::last_user_text)
        .collect();
    assert!(
        text.contains("the contract\n<media kind=\"document\" mime=\"application/pdf\" bytes=\"19\" name=\"Contract 2026.pdf\" path=\"media/"),
        "{text}"
    );
    assert!(
        text.contains("[voice note 1:05] (not transcribed: no transcription service is configured (PB_TRANSCRIBE_URL)"),
        "{text}"
    );
    assert!(w.model.transcriptions().is_empty());
}

#[tokio::test]
async fn send_file_delivers_from_the_chats_folder_in_order_and_refuses_paths_outside() {
    let mut w = World::new().await;
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("send me the report"),
        vec![Reply::tool_call(
            "pocketbrain_send_file",
            json!({"path": "out/report.pdf", "caption": "Here it is"}),
        )],
    );
    w.model.compute(
        |r| r.last_role() == "tool",
        |r| match tool_messages(r).len() {
            1 => Reply::tool_call("pocketbrain_send_file", json!({"path": "../secret.txt"})),
            2 => Reply::tool_call("pocketbrain_send_file", json!({"path": "/etc/passwd"})),
            3 => Reply::tool_call("pocketbrain_send_file", json!({"path": "link.txt"})),
            4 => Reply::tool_call("pocketbrain_send_file", json!({"path": "pic.png"})),
            _ => Reply::text("Sent the report."),
        },
    );
    w.register(DM, "Ann", &[]);
    let dir = w.workspace().join("chats/ann");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let report = b"%PDF-1.4 the report".to_vec();
    std::fs::write(dir.join("out/report.pdf"), &report).unwrap();
    std::fs::write(dir.join("pic.png"), png()).unwrap();
    std::fs::write(w.workspace().join("chats/secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(w.workspace().join("chats/secret.txt"), dir.join("link.txt"))
        .unwrap();
    w.start_bridge().await;
    w.say(DM, "T1", "send me the report").await;
    w.wait_outbox(DM, 3, T).await;
    let out = w.outbox(Some(DM)).await;
    assert_eq!(out.len(), 3, "{out:#?}");
    // The file, then the photo, then the final answer: the order they were made.
    assert_eq!(out[0]["text"], "Andy: Here it is");
    assert_eq!(
        out[0]["media"],
        json!({"kind": "document", "mime": "application/pdf", "filename": "report.pdf",
            "bytes": report.len(), "sha256": sha256_hex(&report)})
    );
    assert_eq!(out[1]["text"], "");
    assert_eq!(out[1]["media"]["kind"], "image");
    assert_eq!(out[1]["media"]["sha256"], sha256_hex(&png()));
    assert_eq!(out[2]["text"], "Andy: Sent the report.");
    assert!(out[2].get("media").is_none());

    let results = tool_messages(w.agent_requests().last().unwrap());
    assert_eq!(results.len(), 5, "{results:#?}");
    assert!(
        results[0].contains("Sending out/report.pdf to this chat as a document"),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("invalid_path") && results[1].contains("inside this chat's folder"),
        "{}",
        results[1]
    );
    assert!(results[2].contains("invalid_path"), "{}", results[2]);
    assert!(
        results[3].contains("link.txt is a symlink"),
        "{}",
        results[3]
    );
    assert!(results[4].contains("as a photo"), "{}", results[4]);
    assert_eq!(
        std::fs::read(w.workspace().join("chats/secret.txt")).unwrap(),
        b"secret"
    );
}

#[tokio::test]
async fn oversize_and_broken_media_are_refused_with_a_reply_naming_the_limit() {
    let mut w = World::new().await;
    w.set_env("PB_MEDIA_MAX_BYTES", "image=40,document=1M");
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    let (status, body) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "BIG",
            "media": {"kind": "image", "mime": "image/png", "data": PNG_B64}}))
        .await;
    assert_eq!(status, 202, "{body}");
    let texts = w.wait_outbox(DM, 1, T).await;
    assert_eq!(
        texts,
        vec![
            "Andy: Your photo is too large (70 bytes); the limit for a photo is 40 bytes. It was not saved."
        ]
    );
    let (status, _) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "BAD",
            "media": {"kind": "sticker", "mime": "image/webp", "data": b64(b"not an image")}}))
        .await;
    assert_eq!(status, 202);
    let texts = w.wait_outbox(DM, 2, T).await;
    assert!(
        texts[1].contains("damaged or not a supported image"),
        "{texts:?}"
    );
    // Bad input at the boundary: a clear error, nothing stored.
    let (status, body) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "X",
            "media": {"kind": "image", "mime": "image/png", "data": "%%%"}}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("media.data: not valid base64"),
        "{body}"
    );
    let (status, body) = w
        .inbox(json!({"chat": DM, "sender": DM, "id": "Y",
            "media": {"kind": "hologram", "mime": "image/png", "data": PNG_B64}}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("media.kind"),
        "{body}"
    );
    // Refused files without a caption start no run.
    w.wait_idle(T).await;
    assert!(w.agent_requests().is_empty());
    assert!(!w.workspace().join("chats/ann/media").exists());
}

#[tokio::test]
async fn a_media_message_in_a_group_that_does_not_trigger_is_context_for_the_next_run() {
    let mut w = vision_world().await;
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("@Andy what"),
        vec![Reply::text("A photo of a dot.")],
    );
    w.register(GROUP, "Family", &[]);
    w.start_bridge().await;
    let (status, _) = w
        .inbox(
            json!({"chat": GROUP, "sender": DM, "sender_name": "Ann", "id": "G1",
            "media": {"kind": "image", "mime": "image/png", "data": PNG_B64}}),
        )
        .await;
    assert_eq!(status, 202);
    w.wait_idle(T).await;
    assert!(w.agent_requests().is_empty(), "no trigger, no run");
    w.say(GROUP, "G2", "@Andy what did Ann send?").await;
    assert_eq!(
        w.wait_outbox(GROUP, 1, T).await,
        vec!["Andy: A photo of a dot."]
    );
    let req = w
        .agent_requests()
        .into_iter()
        .find(|r| r.last_user_text().contains("@Andy what"))
        .unwrap();
    let text = req.last_user_text();
    assert!(text.contains("sender=\"Ann\""), "{text}");
    assert!(path_in(&text).unwrap().ends_with("/G1.png"), "{text}");
    assert_eq!(req.media_parts().len(), 1);
    // A guest's media stays in its own folder.
    assert!(
        w.workspace()
            .join("chats/family")
            .join(path_in(&text).unwrap())
            .is_file()
    );
}
