//! The checks on this machine: the settings, the data folder and its
//! modes, the database, the chats' isolation, the HTTP port and the
//! WhatsApp device store.

use super::*;

pub(super) fn settings(config: &Config) -> Check {
    const NAME: &str = "settings";
    match config.validate().and_then(|()| config.check_http_bind()) {
        Ok(()) => Check::ok(NAME, "valid"),
        Err(e) => Check::fail(
            NAME,
            e.to_string(),
            format!("change {} (see .env.example)", e.setting),
        ),
    }
}

pub(super) fn data_folder(config: &Config) -> Check {
    const NAME: &str = "data folder";
    let dir = &config.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::warn(
                NAME,
                format!("{} does not exist yet", dir.display()),
                "it is created at the bridge's first start; check PB_DATA_DIR if you expected data there",
            );
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{}: {e}", dir.display()),
                "make PB_DATA_DIR a folder the bridge's user can read and write",
            );
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Check::fail(
            NAME,
            format!(
                "{} belongs to uid {}, not to this user (uid {me})",
                dir.display(),
                meta.uid()
            ),
            format!(
                "run as the bridge's user, or chown -R it to that user: {}",
                dir.display()
            ),
        );
    }
    if mode & 0o022 != 0 {
        return Check::fail(
            NAME,
            format!("{} is writable by others (mode {mode:o})", dir.display()),
            format!("chmod 700 {}", dir.display()),
        );
    }
    Check::ok(NAME, format!("{} (mode {mode:o})", dir.display()))
}

/// The data folder 0700 and every file in it that holds messages, keys or
/// the token 0600: the bridge makes them so at each start, so a wider mode
/// is from an older install, a copy, or a hand.
pub(super) fn file_modes(config: &Config) -> Check {
    const NAME: &str = "file modes";
    let dir = &config.data_dir;
    if !dir.exists() {
        return Check::skip(NAME, "the data folder does not exist yet");
    }
    let mut files = vec![config.token_file()];
    for db in [
        config.db_path(),
        config.whatsapp_db(),
        dir.join("fake-phone.sqlite3"),
    ] {
        files.extend(crate::owner_only::sqlite_companions(&db));
        files.push(db);
    }
    let mut wide = Vec::new();
    let mut checked = 0;
    let mode_of = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    if let Some(mode) = mode_of(dir)
        && mode & !crate::owner_only::DIR_MODE != 0
    {
        wide.push((dir.clone(), mode, "700"));
    }
    for f in &files {
        if let Some(mode) = mode_of(f) {
            checked += 1;
            if mode & !crate::owner_only::FILE_MODE != 0 {
                wide.push((f.clone(), mode, "600"));
            }
        }
    }
    if wide.is_empty() {
        return Check::ok(
            NAME,
            format!("{} is 700, its {checked} secret files 600", dir.display()),
        );
    }
    let detail = wide
        .iter()
        .map(|(p, mode, _)| format!("{} is {mode:o}", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let fix = wide
        .iter()
        .map(|(p, _, want)| format!("chmod {want} {}", p.display()))
        .collect::<Vec<_>>()
        .join("; ");
    Check::fail(
        NAME,
        format!("others may read what only you should: {detail}"),
        format!("{fix} (the bridge also narrows them at its next start)"),
    )
}

pub(super) fn database(config: &Config) -> Check {
    const NAME: &str = "database";
    let path = config.db_path();
    if !path.exists() {
        return Check::warn(
            NAME,
            format!("{} does not exist yet", path.display()),
            "it is created at the bridge's first start",
        );
    }
    let checked = crate::store::ops::quick_check(&path);
    match checked {
        Ok((v, _)) if v > crate::store::SCHEMA_VERSION => Check::fail(
            NAME,
            format!(
                "schema version {v} is newer than this build's {}",
                crate::store::SCHEMA_VERSION
            ),
            "upgrade PocketBrain",
        ),
        Ok((v, quick)) if quick == "ok" => Check::ok(NAME, format!("schema version {v}, intact")),
        Ok((_, quick)) => Check::fail(
            NAME,
            format!("integrity check says: {quick}"),
            "restore the last good backup (pocketbrain restore FILE)",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("{}: {e}", path.display()),
            "check the file's owner and permissions; restore a backup if it is damaged",
        ),
    }
}

pub(super) fn isolation(config: &Config) -> Check {
    const NAME: &str = "isolation";
    let workspace = std::path::absolute(&config.workspace).unwrap_or(config.workspace.clone());
    match crate::workspace::enclosing_git(&workspace) {
        None => Check::ok(
            NAME,
            format!(
                "no git repository around {}: each chat folder is its own OpenCode project",
                workspace.display()
            ),
        ),
        Some(git) => Check::fail(
            NAME,
            format!(
                "{} (the bridge refuses to start)",
                crate::workspace::inside_git(&workspace, &git)
            ),
            crate::workspace::INSIDE_GIT_FIX,
        ),
    }
}

pub(super) fn http_port(config: &Config, api: &BridgeApi, running: bool) -> Check {
    const NAME: &str = "http";
    if running {
        return Check::ok(NAME, format!("the bridge answers at {}", api.addr));
    }
    match std::net::TcpListener::bind(config.http_addr) {
        Ok(_) => Check::warn(
            NAME,
            format!("no bridge answers; {} is free for it", config.http_addr),
            "start the bridge (pocketbrain serve, docker compose up -d)",
        ),
        Err(e) => Check::fail(
            NAME,
            format!(
                "no bridge answers at {}, and {} cannot be bound: {e}",
                api.addr, config.http_addr
            ),
            "something else holds the port: stop it, or set PB_HTTP_ADDR to a free one",
        ),
    }
}

pub(super) fn whatsapp(config: &Config) -> Check {
    const NAME: &str = "whatsapp";
    if config.channel == ChannelKind::Fake {
        return Check::skip(NAME, "not applicable (PB_CHANNEL=fake)");
    }
    let path = config.whatsapp_db();
    let fix = "start the bridge and scan the QR code it logs (README: Pairing with WhatsApp)";
    if !path.exists() {
        return Check::fail(NAME, format!("no device store at {}", path.display()), fix);
    }
    let paired = crate::store::ops::device_paired(&path);
    match paired {
        Ok(true) => Check::ok(NAME, "device paired"),
        Ok(false) => Check::fail(NAME, "the device store has no paired identity", fix),
        Err(e) => Check::fail(
            NAME,
            format!("cannot read {}: {e}", path.display()),
            "stop the bridge, then pocketbrain whatsapp logout --force and pair again",
        ),
    }
}
