//! Paths the agent names inside its chat's folder: checked part by part
//! (no `..`, no symlink on the way), read, and turned into file parts.

use super::*;

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
pub(super) fn open_parent(
    root: &Path,
    parts: &[String],
    shown: &str,
) -> Result<SafeDir, PathError> {
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
