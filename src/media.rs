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

const KI: u64 = 1024;
const MI: u64 = 1024 * 1024;

/// Largest file per kind, in bytes (`PB_MEDIA_MAX_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    pub image: u64,
    pub voice: u64,
    pub audio: u64,
    pub document: u64,
    pub video: u64,
    pub sticker: u64,
}

impl Default for MediaLimits {
    /// WhatsApp's own limits where they are lower: 16 MB for photos, voice
    /// notes and audio, 64 MB for video (WhatsApp allows more, but a bridge
    /// holds a file in memory while it passes it on), 100 MB for documents,
    /// 1 MB for stickers.
    fn default() -> Self {
        Self {
            image: 16 * MI,
            voice: 16 * MI,
            audio: 16 * MI,
            document: 100 * MI,
            video: 64 * MI,
            sticker: MI,
        }
    }
}

impl MediaLimits {
    pub fn of(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.image,
            MediaKind::Voice => self.voice,
            MediaKind::Audio => self.audio,
            MediaKind::Document => self.document,
            MediaKind::Video => self.video,
            MediaKind::Sticker => self.sticker,
        }
    }

    fn set(&mut self, kind: MediaKind, v: u64) {
        match kind {
            MediaKind::Image => self.image = v,
            MediaKind::Voice => self.voice = v,
            MediaKind::Audio => self.audio = v,
            MediaKind::Document => self.document = v,
            MediaKind::Video => self.video = v,
            MediaKind::Sticker => self.sticker = v,
        }
    }

    /// The largest of the limits.
    pub fn largest(&self) -> u64 {
        MediaKind::ALL
            .iter()
            .map(|k| self.of(*k))
            .max()
            .unwrap_or(0)
    }

    /// Parses `PB_MEDIA_MAX_BYTES`: one size for every kind (`20M`), or
    /// `kind=size` pairs separated by commas (`image=8M,document=50M`);
    /// kinds not named keep their default. Sizes are bytes, or with `K`,
    /// `M`, `G` (1024-based; `KB`, `MB`, `GB`, `KiB`, ... read the same).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut limits = Self::default();
        let value = value.trim();
        if !value.contains('=') {
            let v = parse_size(value)?;
            for k in MediaKind::ALL {
                limits.set(k, v);
            }
            return Ok(limits);
        }
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, size) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: expected kind=size"))?;
            let kind: MediaKind = kind.trim().parse().map_err(|_| {
                format!(
                    "{kind:?} is not a media kind (image, voice, audio, document, video, sticker)"
                )
            })?;
            limits.set(kind, parse_size(size.trim())?);
        }
        Ok(limits)
    }
}

/// Sizes in messages to people: `16 MB`, `512 KB`, `900 bytes`.
pub fn human_size(n: u64) -> String {
    if n >= MI && n.is_multiple_of(MI) {
        format!("{} MB", n / MI)
    } else if n >= MI {
        format!("{:.1} MB", n as f64 / MI as f64)
    } else if n >= KI {
        format!("{} KB", n.div_ceil(KI))
    } else {
        format!("{n} bytes")
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = s[digits.len()..].to_ascii_lowercase();
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))?;
    let mul = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KI,
        "m" | "mb" | "mib" => MI,
        "g" | "gb" | "gib" => 1024 * MI,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M or G)")),
    };
    let v = n
        .checked_mul(mul)
        .filter(|v| (1..=4 * 1024 * MI).contains(v))
        .ok_or_else(|| format!("{s:?}: a size must be between 1 byte and 4 GB"))?;
    Ok(v)
}

/// The type a file's first bytes show, when they show one this bridge
/// knows. Magic numbers only: enough to tell a real photo from a broken or
/// mislabelled one before a vision model gets it.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let at = |i: usize, magic: &[u8]| bytes.get(i..i + magic.len()) == Some(magic);
    Some(if at(0, b"\xFF\xD8\xFF") {
        "image/jpeg"
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "image/gif"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        "audio/wav"
    } else if at(0, b"OggS") {
        "audio/ogg"
    } else if at(0, b"%PDF-") {
        "application/pdf"
    } else if at(4, b"ftyp") {
        if at(8, b"M4A ") {
            "audio/mp4"
        } else {
            "video/mp4"
        }
    } else if at(0, b"ID3") || (bytes.len() > 1 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0) {
        "audio/mpeg"
    } else {
        return None;
    })
}

/// The image types a vision model is given.
pub const VISION_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// `type/subtype` of a mime string, lower-case, parameters dropped.
pub fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// (mime, extension) pairs, the first extension of a type being its own.
const TYPES: &[(&str, &str)] = &[
    ("image/jpeg", "jpg"),
    ("image/jpeg", "jpeg"),
    ("image/png", "png"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("audio/ogg", "ogg"),
    ("audio/ogg", "opus"),
    ("audio/mpeg", "mp3"),
    ("audio/mp4", "m4a"),
    ("audio/aac", "aac"),
    ("audio/wav", "wav"),
    ("audio/webm", "weba"),
    ("audio/amr", "amr"),
    ("video/mp4", "mp4"),
    ("video/3gpp", "3gp"),
    ("video/webm", "webm"),
    ("video/quicktime", "mov"),
    ("application/pdf", "pdf"),
    ("text/plain", "txt"),
    ("text/markdown", "md"),
    ("text/csv", "csv"),
    ("application/json", "json"),
    ("application/zip", "zip"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
    ("application/vnd.oasis.opendocument.text", "odt"),
];

/// The extension a saved file gets: its own type's, else the sender's file
/// name's (if plain), else `bin`.
pub fn extension(mime: &str, filename: Option<&str>) -> String {
    let m = essence(mime);
    if let Some((_, ext)) = TYPES.iter().find(|(t, _)| *t == m) {
        return (*ext).to_owned();
    }
    filename
        .and_then(|f| Path::new(f).extension())
        .and_then(OsStr::to_str)
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "bin".into())
}

/// A file's type from its name (for files the agent sends).
pub fn mime_for_name(name: &str) -> &'static str {
    let ext = Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    TYPES
        .iter()
        .find(|(_, e)| *e == ext)
        .map(|(t, _)| *t)
        .unwrap_or("application/octet-stream")
}

/// What WhatsApp message a file to send becomes: photos as images (JPEG,
/// PNG), audio as audio, MP4/3GP as video, everything else (GIF, WebP, PDF,
/// ...) as a document, which WhatsApp takes in any format.
pub fn outgoing_kind(mime: &str) -> MediaKind {
    let m = essence(mime);
    match m.as_str() {
        "image/jpeg" | "image/png" => MediaKind::Image,
        "video/mp4" | "video/3gpp" => MediaKind::Video,
        _ if m.starts_with("audio/") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

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

/// Why a path the agent named cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("the path must name a file inside this chat's folder ({0})")]
    Outside(String),
    #[error("{0} is a symlink; only regular files inside this chat's folder can be sent")]
    Symlink(String),
    #[error("{0} does not exist in this chat's folder")]
    NotFound(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{path} is {size}, over the limit of {limit} for a {noun}")]
    TooLarge {
        path: String,
        size: String,
        limit: String,
        noun: &'static str,
    },
    #[error("{0} is empty")]
    Empty(String),
    #[error("cannot read {0}: {1}")]
    Io(String, String),
}

/// The plain components of `path` inside `chat_dir`: relative paths as
/// they are, absolute ones only if they lie under `chat_dir`; `..`, `.`
/// and empty components are refused, so the path stays inside lexically.
pub fn components(chat_dir: &Path, path: &str) -> Result<Vec<String>, PathError> {
    let outside = || PathError::Outside(path.to_owned());
    let p = Path::new(path.trim());
    let rel = if p.is_absolute() {
        p.strip_prefix(chat_dir).map_err(|_| outside())?
    } else {
        p
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(outside)?.to_owned()),
            Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    if parts.is_empty() {
        return Err(outside());
    }
    Ok(parts)
}

/// Opens the folders of `parts` (all but the last) below `root` without
/// following or replacing anything: a symlink on the way is refused.
fn open_parent(root: &Path, parts: &[String], shown: &str) -> Result<SafeDir, PathError> {
    let mut dir =
        SafeDir::open_root(root).map_err(|e| PathError::Io(shown.into(), e.to_string()))?;
    for part in &parts[..parts.len() - 1] {
        dir = dir.descend(part).map_err(|e| match e {
            ReadError::NotFound => PathError::NotFound(shown.into()),
            ReadError::Symlink => PathError::Symlink(shown.into()),
            ReadError::NotAFile => PathError::NotAFile(shown.into()),
            ReadError::Io(e) => PathError::Io(shown.into(), e.to_string()),
        })?;
    }
    Ok(dir)
}

/// Reads the file `path` (relative to `chat_dir`, see [`components`]),
/// at most `max` bytes.
pub fn read_in(chat_dir: &Path, path: &str, max: u64) -> Result<Vec<u8>, PathError> {
    let parts = components(chat_dir, path)?;
    let shown = parts.join("/");
    let dir = open_parent(chat_dir, &parts, &shown)?;
    match dir.read_limited(OsStr::new(parts.last().expect("not empty")), max) {
        Ok(Limited::Whole(b)) => Ok(b),
        Ok(Limited::TooLarge(n)) => Err(PathError::TooLarge {
            path: shown,
            size: format!("over {}", human_size(n - 1)),
            limit: human_size(max),
            noun: "file",
        }),
        Err(ReadError::NotFound) => Err(PathError::NotFound(shown)),
        Err(ReadError::Symlink) => Err(PathError::Symlink(shown)),
        Err(ReadError::NotAFile) => Err(PathError::NotAFile(shown)),
        Err(ReadError::Io(e)) => Err(PathError::Io(shown, e.to_string())),
    }
}

/// Checks a file the agent wants to send and describes it for the outbox:
/// inside the chat's folder, a regular file reached without a symlink,
/// not empty, within the limit for the kind it goes out as.
pub fn resolve_outgoing(
    chat_dir: &Path,
    path: &str,
    limits: &MediaLimits,
) -> Result<(OutboxMedia, u64), PathError> {
    let parts = components(chat_dir, path)?;
    let shown = parts.join("/");
    let name = parts.last().expect("not empty").clone();
    let mime = mime_for_name(&name);
    let kind = outgoing_kind(mime);
    let limit = limits.of(kind);
    let bytes = read_in(chat_dir, &shown, limit).map_err(|e| match e {
        PathError::TooLarge {
            path, size, limit, ..
        } => PathError::TooLarge {
            path,
            size,
            limit,
            noun: kind.noun(),
        },
        e => e,
    })?;
    if bytes.is_empty() {
        return Err(PathError::Empty(shown));
    }
    // The name may lie about the content: a photo that is no photo goes
    // as a document.
    let (kind, mime) = match (kind, sniff(&bytes)) {
        (MediaKind::Image, Some(real)) if real == mime => (kind, mime),
        (MediaKind::Image, _) => (MediaKind::Document, mime),
        other => (other.0, mime),
    };
    Ok((
        OutboxMedia {
            path: shown,
            kind,
            mime: mime.to_owned(),
            filename: name,
        },
        bytes.len() as u64,
    ))
}

/// A prompt's file part: a saved image, as a `data:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    pub mime: String,
    pub filename: String,
    /// `data:<mime>;base64,...`
    pub url: String,
}

/// The image saved at `info.path` in `chat_dir`, as a file part for the
/// prompt; `Err` says why it cannot go along (it then stays a path).
pub fn image_part(chat_dir: &Path, info: &MediaInfo, max: u64) -> Result<FilePart, PathError> {
    use base64::Engine;
    let path = info.path.as_deref().unwrap_or_default();
    let bytes = read_in(chat_dir, path, max)?;
    let mime = sniff(&bytes)
        .filter(|m| VISION_TYPES.contains(m))
        .unwrap_or(info.mime.as_str())
        .to_owned();
    let filename = Path::new(path)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("image")
        .to_owned();
    let url = format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    Ok(FilePart {
        mime,
        filename,
        url,
    })
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
