//! What type a file is: sniffed from its first bytes, from its MIME
//! string, or from its name; and what WhatsApp message it becomes.

use super::*;

/// The type a file's first bytes show, when they show one this bridge
/// knows. Magic numbers only (the `infer` crate's): enough to tell a real
/// photo from a broken or mislabelled one before a vision model gets it.
/// Only the types below are reported, under the names WhatsApp and the
/// rest of the bridge use (Ogg Opus is `audio/ogg`, M4A `audio/mp4`, WAV
/// `audio/wav`, a QuickTime or M4V container `video/mp4`); anything else is
/// `None`, as if unknown.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    Some(match infer::get(bytes)?.mime_type() {
        t @ ("image/jpeg" | "image/png" | "image/gif" | "image/webp" | "audio/ogg"
        | "audio/mpeg" | "application/pdf" | "video/mp4") => t,
        "audio/opus" => "audio/ogg",
        "audio/x-wav" => "audio/wav",
        "audio/m4a" => "audio/mp4",
        "video/quicktime" | "video/x-m4v" => "video/mp4",
        _ => return None,
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
pub(super) const TYPES: &[(&str, &str)] = &[
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

/// A file's type from its name (for files the agent sends): the bridge's
/// own table first (the names WhatsApp expects, such as `audio/ogg` for
/// `.opus`), then `mime_guess`'s, else `application/octet-stream`.
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
        .or_else(|| mime_guess::from_ext(&ext).first_raw())
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
