//! Pairing: a person who wrote unasked gets a code; the owner's
//! `pair CODE` (or `pocketbrain pair approve`) registers them.

use super::*;

/// `pair CODE`, as the owner writes it in the main chat.
pub fn parse_pair(text: &str) -> Option<&str> {
    let mut it = text.split_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(w), Some(code), None)
            if w.eq_ignore_ascii_case("pair")
                && code.len() == 6
                && code.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Some(code)
        }
        _ => None,
    }
}

impl Commands {
    /// A direct message from someone not registered. With
    /// `PB_UNKNOWN_DM=pair` and the assistant's own number (on a shared
    /// number such chats are the owner's own conversations), they get one
    /// reply with a pairing code an hour and the main chat a notice;
    /// nothing of theirs reaches the model.
    pub async fn stranger(&self, chat: &ChatJid, sender_name: Option<String>, from_me: bool) {
        let person = !chat.is_group() && !chat.is_api();
        if self.unknown_dm != crate::config::UnknownDm::Pair
            || !self.persona.own_number
            || from_me
            || !person
        {
            return;
        }
        let code = match self.store.offer_pairing(chat, sender_name.clone()).await {
            Ok(Some(code)) => code,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(chat = %chat, error = %e, "cannot offer a pairing code");
                return;
            }
        };
        tracing::info!(chat = %chat, "unknown direct message: pairing code offered");
        self.say(
            chat,
            &format!(
                "Hi! I only talk with people my owner has approved. Your pairing code is {code}: send it to my owner, who can approve you with it within the hour."
            ),
        )
        .await;
        if let Ok(Some(main)) = self.store.main_chat().await {
            let who = match &sender_name {
                Some(n) => format!("{n} ({chat})"),
                None => chat.to_string(),
            };
            self.say(
                &main,
                &format!(
                    "{who} wrote to me and got a pairing code. If you know them, ask them for it and send \"pair CODE\" here within the hour."
                ),
            )
            .await;
        }
    }

    /// The owner's `pair CODE` in the main chat: registers the person who
    /// got that code (profile member), from their next message on.
    pub async fn pair(&self, code: &str) -> Result<String, String> {
        let (name, reg) = pair_by_code(&self.store, &self.workspace, code)
            .await?
            .ok_or_else(|| format!("No pairing code {code} is waiting (codes last an hour)."))?;
        tracing::info!(chat = %reg.jid, folder = %reg.folder, "paired by code");
        self.say(&reg.jid, "You're approved: write to me any time.")
            .await;
        Ok(format!(
            "Paired: {name} ({}) may now talk to me (profile member, folder {}).",
            reg.jid, reg.folder
        ))
    }
}

/// Takes pairing `code` and registers the person who got it: their name
/// (their number when they gave none) and registration; `None` for a code
/// that is unknown, expired or used.
pub async fn pair_by_code(
    store: &Store,
    workspace: &std::path::Path,
    code: &str,
) -> Result<Option<(String, RegisteredChat)>, String> {
    let Some(p) = store
        .take_pairing(code)
        .await
        .map_err(|e| format!("Cannot pair: {e}"))?
    else {
        return Ok(None);
    };
    let name = p
        .sender_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            p.chat
                .as_str()
                .split('@')
                .next()
                .unwrap_or("contact")
                .to_owned()
        });
    let reg = register_person(store, workspace, &p.chat, &name)
        .await
        .map_err(|e| format!("Cannot register {}: {e}", p.chat))?;
    Ok(Some((name, reg)))
}

/// Registers a person's direct chat as `member`, in a folder from the name
/// (or the number when the name's folder is taken); their messages from
/// before are not carried into the first prompt.
pub async fn register_person(
    store: &Store,
    workspace: &std::path::Path,
    chat: &ChatJid,
    name: &str,
) -> Result<RegisteredChat, String> {
    let number = chat.as_str().split('@').next().unwrap_or("contact");
    let mut last = String::new();
    for folder in [
        crate::ids::Folder::from_name(name),
        crate::ids::Folder::from_name(number),
    ] {
        let reg = RegisteredChat {
            jid: chat.clone(),
            name: name.to_owned(),
            folder,
            is_main: false,
            trigger: TriggerRule::Mention,
            profile: crate::model::Profile::Member,
        };
        match store.register(reg.clone()).await {
            Ok(()) => {
                crate::workspace::ensure_chat_dir(workspace, &reg.folder, &reg.name, &reg.jid)
                    .map_err(|e| e.to_string())?;
                return Ok(reg);
            }
            Err(crate::store::StoreError::Conflict(why)) => last = why,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}
