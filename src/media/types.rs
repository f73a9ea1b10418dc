//! What type a file is: sniffed from its first bytes, from its MIME
//! string, or from its name; and what WhatsApp message it becomes.

use super::*;

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
