//! Size limits per media kind (`PB_MEDIA_MAX_BYTES`) and sizes as people
//! read and write them.

use super::*;

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
    // 1024-based however it is spelled: `bytesize` reads `K` and `KB` as
    // 1000, so every spelling is passed on as its binary unit.
    let binary = match unit.as_str() {
        "" | "b" => "B",
        "k" | "kb" | "kib" => "KiB",
        "m" | "mb" | "mib" => "MiB",
        "g" | "gb" | "gib" => "GiB",
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M or G)")),
    };
    let n: bytesize::ByteSize = format!("{}{binary}", digits.trim())
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))?;
    Some(n.as_u64())
        .filter(|v| (1..=4 * bytesize::GIB).contains(v))
        .ok_or_else(|| format!("{s:?}: a size must be between 1 byte and 4 GB"))
}
