//! Media: photos, voice notes, audio, documents, video and stickers, in and
//! out.
//!
//! In: a channel hands over an [`InboundMedia`] (its bytes, or the
//! temporary file it streamed them into, or why it has neither).
//! [`save_inbound`] checks it against the kind's size limit
//! ([`MediaLimits`], `PB_MEDIA_MAX_BYTES`) by its real size, checks a
//! photo or sticker really is an image the model can read ([`sniff`]), and
//! saves it into the chat's own folder as `media/<date>/<id>.<ext>`, through
//! [`SafeDir`] (the agent can write there: no planted symlink is followed).
//! Whatever happens, the message keeps a [`MediaInfo`]: the saved path, or a
//! note saying why there is none, so nothing is lost silently.
//!
//! To the agent: `crate::prompt` describes the media in the message element;
//! images go along as file parts ([`image_part`]); voice notes and audio are
//! transcribed before the prompt is built through a [`Transcriber`]
//! (`crate::transcribe` implements it over HTTP).
//!
//! Out: [`resolve_outgoing`] checks a path the agent names (inside the
//! calling chat's folder, no `..`, no symlink anywhere on the way) and says
//! what kind of WhatsApp message the file becomes; [`read_outgoing`] reads it
//! again when the sender sends it.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::ids::{Folder, MessageId};
use crate::model::{InboundMedia, MediaData, MediaInfo, MediaKind, OutboxMedia};
use crate::safe_dir::{Limited, ReadError, SafeDir};

mod limits;
mod paths;
mod types;

pub use limits::*;
pub use paths::*;
pub use types::*;

const KI: u64 = bytesize::KIB;
const MI: u64 = bytesize::MIB;

/// A message id as a file name stem: WhatsApp's and the fake channel's ids
/// are plain already; anything else is replaced.
fn file_stem(id: &MessageId) -> String {
    let s: String = id
        .as_str()
        .chars()
        .take(96)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "media".into() } else { s }
}

/// Why an inbound file was refused: the person is told (`reply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the person reads.
    pub reply: String,
}

/// Saves an inbound message's media into its chat's folder
/// (`<workspace>/chats/<folder>/media/<date>/<id>.<ext>`) and returns the
/// description to store. `folder` is `None` for a chat that is not
/// registered: its media is not kept. A refusal (too large, not a readable
/// image) comes with the text to tell the person; the description then says
/// why there is no file.
pub fn save_inbound(
    workspace: &Path,
    folder: Option<&Folder>,
    id: &MessageId,
    date: &str,
    media: InboundMedia,
    limits: &MediaLimits,
) -> (MediaInfo, Option<Refusal>) {
    let InboundMedia { mut info, data } = media;
    let noun = info.kind.noun();
    let limit = limits.of(info.kind);
    // The real size of what arrived; the announced one stays for a file
    // that was not fetched.
    let data = match data {
        Ok(d) => match d.size() {
            Ok(n) => {
                info.bytes = n;
                Ok(d)
            }
            Err(e) => Err(format!("the downloaded file cannot be read ({e})")),
        },
        Err(why) => Err(why),
    };
    // Over the limit by its real size, or by the size the sender announced
    // (or the channel counted before it stopped) for a file that was
    // therefore not fetched in full.
    if info.bytes > limit {
        info.note = Some(format!(
            "media not available: {} is over the limit of {} for a {noun} (PB_MEDIA_MAX_BYTES)",
            human_size(info.bytes),
            human_size(limit)
        ));
        let reply = format!(
            "Your {noun} is too large ({}); the limit for a {noun} is {}. It was not saved.",
            human_size(info.bytes),
            human_size(limit)
        );
        return (info, Some(Refusal { reply }));
    }
    let data = match data {
        Ok(d) => d,
        Err(why) => {
            info.note = Some(format!("media not available: {why}"));
            return (info, None);
        }
    };
    if info.bytes == 0 {
        info.note = Some("media not available: the file is empty".into());
        let reply = format!("Your {noun} arrived empty; please send it again.");
        return (info, Some(Refusal { reply }));
    }
    if matches!(info.kind, MediaKind::Image | MediaKind::Sticker) {
        match head(&data)
            .as_deref()
            .ok()
            .and_then(sniff)
            .filter(|m| VISION_TYPES.contains(m))
        {
            Some(real) => info.mime = real.to_owned(),
            None => {
                info.note = Some(format!(
                    "media not available: not a readable image (declared {}; JPEG, PNG, GIF and WebP are supported)",
                    info.mime
                ));
                let reply = format!(
                    "I could not read your {noun}: the file is damaged or not a supported image (JPEG, PNG, GIF, WebP)."
                );
                return (info, Some(Refusal { reply }));
            }
        }
    }
    let Some(folder) = folder else {
        info.note =
            Some("media not available: the chat is not registered, so it was not kept".into());
        return (info, None);
    };
    let name = format!(
        "{}.{}",
        file_stem(id),
        extension(&info.mime, info.filename.as_deref())
    );
    let saved =
        SafeDir::open_path(workspace, &["chats", folder.as_str(), "media", date]).and_then(|dir| {
            match &data {
                MediaData::Bytes(b) => dir.write(&name, b),
                MediaData::File(f) => {
                    // Streamed from the channel's temporary file, never whole
                    // in memory; at most the size checked above.
                    let mut r: &std::fs::File = f;
                    r.seek(SeekFrom::Start(0))?;
                    dir.write_from(&name, &mut r.take(limit))
                }
            }
        });
    match saved {
        Ok(()) => info.path = Some(format!("media/{date}/{name}")),
        Err(e) => {
            tracing::error!(folder = %folder.as_str(), error = %e, "cannot save inbound media");
            info.note = Some(format!("media not available: saving it failed ({e})"));
        }
    }
    (info, None)
}

/// A file's first bytes, enough for [`sniff`].
fn head(data: &MediaData) -> std::io::Result<Vec<u8>> {
    const HEAD: usize = 16;
    match data {
        MediaData::Bytes(b) => Ok(b[..b.len().min(HEAD)].to_vec()),
        MediaData::File(f) => {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0; HEAD];
            let n = f.read_at(&mut buf, 0)?;
            buf.truncate(n);
            Ok(buf)
        }
    }
}

/// `0:12`, `1:05:00`: a voice note's length.
pub fn clock(seconds: u32) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Why a transcription failed, for the note the agent sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranscribeError(pub String);

/// Turns speech into text (an OpenAI-compatible `/v1/audio/transcriptions`
/// endpoint in production, see `crate::transcribe`).
pub trait Transcriber: Send + Sync + 'static {
    fn transcribe<'a>(
        &'a self,
        audio: Vec<u8>,
        mime: &'a str,
        filename: &'a str,
    ) -> BoxFuture<'a, Result<String, TranscribeError>>;

    /// How long one transcription may take before the message goes on with
    /// a note instead.
    fn timeout(&self) -> Duration;
}

#[cfg(test)]
mod tests;
