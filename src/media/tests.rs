use super::*;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn media(kind: MediaKind, mime: &str, data: Result<Vec<u8>, String>) -> InboundMedia {
    InboundMedia {
        info: MediaInfo {
            kind,
            mime: mime.into(),
            ..MediaInfo::default()
        },
        data: data.map(MediaData::from),
    }
}

#[test]
fn limits_parse_one_size_or_pairs() {
    let all = MediaLimits::parse("20M").unwrap();
    assert!(MediaKind::ALL.iter().all(|k| all.of(*k) == 20 * MI));
    let some = MediaLimits::parse("image=8MB, document=512k").unwrap();
    assert_eq!(some.image, 8 * MI);
    assert_eq!(some.document, 512 * KI);
    assert_eq!(some.video, MediaLimits::default().video);
    assert_eq!(MediaLimits::parse("1000").unwrap().sticker, 1000);
    assert!(
        MediaLimits::parse("photo=1M")
            .unwrap_err()
            .contains("not a media kind")
    );
    assert!(MediaLimits::parse("12X").is_err());
    assert!(MediaLimits::parse("0").is_err());
}

#[test]
fn every_spelling_of_a_unit_is_1024_based_and_sizes_stay_in_range() {
    for s in ["2K", "2k", "2KB", "2kib", "2 K"] {
        assert_eq!(parse_size(s), Ok(2 * KI), "{s}");
    }
    assert_eq!(parse_size("1G"), Ok(1024 * MI));
    assert_eq!(parse_size("4GB"), Ok(4 * 1024 * MI));
    assert!(
        parse_size("5G")
            .unwrap_err()
            .contains("between 1 byte and 4 GB")
    );
    assert!(parse_size("M").unwrap_err().contains("is not a size"));
    assert!(parse_size("-1K").unwrap_err().contains("is not a size"));
    assert!(parse_size("2T").unwrap_err().contains("unknown unit"));
}

#[test]
fn sizes_read_well() {
    assert_eq!(human_size(16 * MI), "16 MB");
    assert_eq!(human_size(1536 * KI), "1.5 MB");
    assert_eq!(human_size(2000), "2 KB");
    assert_eq!(human_size(900), "900 bytes");
}

#[test]
fn sniffing_tells_real_images_apart() {
    assert_eq!(sniff(PNG), Some("image/png"));
    assert_eq!(sniff(b"\xFF\xD8\xFF\xE0JFIF"), Some("image/jpeg"));
    assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
    assert_eq!(sniff(b"OggS\0\x02"), Some("audio/ogg"));
    assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
    assert_eq!(sniff(b"hello"), None);
    // Under the names the bridge uses, whatever the library calls them.
    let mut opus = b"OggS".to_vec();
    opus.resize(28, 0);
    opus.extend_from_slice(b"OpusHead");
    assert_eq!(sniff(&opus), Some("audio/ogg"));
    assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), Some("audio/wav"));
    assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0"), Some("audio/mp4"));
    assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\0\0"), Some("video/mp4"));
    assert_eq!(sniff(b"ID3\x03\0"), Some("audio/mpeg"));
    // A type the bridge does not use is not reported.
    assert_eq!(sniff(b"BM\0\0\0\0\0\0\0\0\0\0"), None);
}

#[test]
fn extensions_and_kinds() {
    assert_eq!(extension("audio/ogg; codecs=opus", None), "ogg");
    assert_eq!(extension("application/x-thing", Some("notes.TAR")), "tar");
    assert_eq!(extension("application/x-thing", Some("../evil/")), "bin");
    assert_eq!(mime_for_name("report.PDF"), "application/pdf");
    assert_eq!(mime_for_name("voice.opus"), "audio/ogg");
    assert_eq!(mime_for_name("page.html"), "text/html");
    assert_eq!(mime_for_name("blob"), "application/octet-stream");
    assert_eq!(outgoing_kind("image/png"), MediaKind::Image);
    assert_eq!(outgoing_kind("image/webp"), MediaKind::Document);
    assert_eq!(outgoing_kind("audio/mpeg"), MediaKind::Audio);
    assert_eq!(outgoing_kind("video/mp4"), MediaKind::Video);
    assert_eq!(clock(12), "0:12");
    assert_eq!(clock(3725), "1:02:05");
}

#[test]
fn inbound_media_is_saved_in_the_chats_folder() {
    let ws = tempfile::tempdir().unwrap();
    let folder = Folder::parse("fam").unwrap();
    let (info, refusal) = save_inbound(
        ws.path(),
        Some(&folder),
        &MessageId::new("ABC/../1"),
        "2026-12-01",
        media(MediaKind::Image, "image/jpeg", Ok(PNG.to_vec())),
        &MediaLimits::default(),
    );
    assert!(refusal.is_none());
    // The sniffed type wins over the declared one.
    assert_eq!(info.mime, "image/png");
    assert_eq!(info.path.as_deref(), Some("media/2026-12-01/ABC____1.png"));
    let saved = ws.path().join("chats/fam/media/2026-12-01/ABC____1.png");
    assert_eq!(std::fs::read(saved).unwrap(), PNG);
    assert_eq!(info.bytes, PNG.len() as u64);
}

#[test]
fn oversize_corrupt_missing_and_unregistered_media_say_why() {
    let ws = tempfile::tempdir().unwrap();
    let folder = Folder::parse("fam").unwrap();
    let limits = MediaLimits::parse("image=10").unwrap();
    let save = |m: InboundMedia, f: Option<&Folder>| {
        save_inbound(ws.path(), f, &MessageId::new("X"), "d", m, &limits)
    };
    let (info, refusal) = save(
        media(MediaKind::Image, "image/png", Ok(PNG.to_vec())),
        Some(&folder),
    );
    assert!(info.path.is_none());
    assert!(info.note.unwrap().contains("over the limit of 10 bytes"));
    assert!(
        refusal
            .unwrap()
            .reply
            .contains("the limit for a photo is 10 bytes")
    );

    let (info, refusal) = save(
        media(MediaKind::Sticker, "image/webp", Ok(b"nope".to_vec())),
        Some(&folder),
    );
    assert!(info.note.unwrap().contains("not a readable image"));
    assert!(
        refusal
            .unwrap()
            .reply
            .contains("damaged or not a supported image")
    );

    let (info, refusal) = save(
        media(
            MediaKind::Voice,
            "audio/ogg",
            Err("download failed: 404".into()),
        ),
        Some(&folder),
    );
    assert_eq!(
        info.note.as_deref(),
        Some("media not available: download failed: 404")
    );
    assert!(refusal.is_none());

    let (info, _) = save(
        media(
            MediaKind::Document,
            "application/pdf",
            Ok(b"%PDF-1".to_vec()),
        ),
        None,
    );
    assert!(info.note.unwrap().contains("not registered"));
    assert!(!ws.path().join("chats").exists());
}

#[test]
fn outgoing_paths_stay_inside_the_chats_folder() {
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path().join("chats/fam");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/pic.png"), PNG).unwrap();
    std::fs::write(dir.join("fake.png"), b"not a png").unwrap();
    std::fs::write(ws.path().join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(ws.path().join("secret.txt"), dir.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(ws.path(), dir.join("up")).unwrap();
    let limits = MediaLimits::default();

    let (m, size) = resolve_outgoing(&dir, "out/pic.png", &limits).unwrap();
    assert_eq!(
        (m.kind, m.mime.as_str(), m.filename.as_str(), size),
        (MediaKind::Image, "image/png", "pic.png", PNG.len() as u64)
    );
    let abs = dir.join("out/pic.png");
    assert_eq!(
        resolve_outgoing(&dir, abs.to_str().unwrap(), &limits)
            .unwrap()
            .0
            .path,
        "out/pic.png"
    );
    // A name that lies goes as a document.
    assert_eq!(
        resolve_outgoing(&dir, "fake.png", &limits).unwrap().0.kind,
        MediaKind::Document
    );

    for bad in [
        "../secret.txt",
        "out/../../secret.txt",
        "/etc/passwd",
        "",
        ".",
    ] {
        assert!(
            matches!(
                resolve_outgoing(&dir, bad, &limits),
                Err(PathError::Outside(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        resolve_outgoing(&dir, "link.txt", &limits),
        Err(PathError::Symlink(_))
    ));
    assert!(matches!(
        resolve_outgoing(&dir, "up/secret.txt", &limits),
        Err(PathError::Symlink(_))
    ));
    assert!(matches!(
        resolve_outgoing(&dir, "nope.pdf", &limits),
        Err(PathError::NotFound(_))
    ));
    assert!(matches!(
        resolve_outgoing(&dir, "out", &limits),
        Err(PathError::NotAFile(_))
    ));
    let small = MediaLimits::parse("4").unwrap();
    assert!(matches!(
        resolve_outgoing(&dir, "out/pic.png", &small),
        Err(PathError::TooLarge { .. })
    ));
    // Nothing was created or replaced on the way.
    assert!(
        std::fs::symlink_metadata(dir.join("up"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn an_image_becomes_a_data_url_part() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("media/d")).unwrap();
    std::fs::write(ws.path().join("media/d/p.png"), PNG).unwrap();
    let info = MediaInfo {
        kind: MediaKind::Image,
        mime: "image/png".into(),
        path: Some("media/d/p.png".into()),
        ..MediaInfo::default()
    };
    let part = image_part(ws.path(), &info, 1000).unwrap();
    assert_eq!(part.mime, "image/png");
    assert_eq!(part.filename, "p.png");
    assert_eq!(part.url, "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==");
}

#[test]
fn a_downloaded_file_is_copied_into_the_chats_folder_and_checked_by_its_real_size() {
    use std::io::Write;
    let ws = tempfile::tempdir().unwrap();
    let folder = Folder::parse("fam").unwrap();
    let file = |bytes: &[u8]| {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        MediaData::File(std::sync::Arc::new(f))
    };
    let announced = |data| InboundMedia {
        info: MediaInfo {
            kind: MediaKind::Image,
            mime: "image/jpeg".into(),
            // What the sender announced; the file decides.
            bytes: 1,
            ..MediaInfo::default()
        },
        data: Ok(data),
    };
    let (info, refusal) = save_inbound(
        ws.path(),
        Some(&folder),
        &MessageId::new("F1"),
        "d",
        announced(file(PNG)),
        &MediaLimits::default(),
    );
    assert!(refusal.is_none());
    assert_eq!(
        (info.mime.as_str(), info.bytes),
        ("image/png", PNG.len() as u64)
    );
    assert_eq!(
        std::fs::read(ws.path().join("chats/fam/media/d/F1.png")).unwrap(),
        PNG
    );

    let (info, refusal) = save_inbound(
        ws.path(),
        Some(&folder),
        &MessageId::new("F2"),
        "d",
        announced(file(PNG)),
        &MediaLimits::parse("image=10").unwrap(),
    );
    assert!(refusal.unwrap().reply.contains("too large (16 bytes)"));
    assert!(info.path.is_none());
    assert!(!ws.path().join("chats/fam/media/d/F2.png").exists());
}
