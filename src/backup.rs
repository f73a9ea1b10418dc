//! `pocketbrain backup` and `restore`: one tar archive with what a chat's
//! memory needs, taken while the bridge runs.
//!
//! The archive holds:
//!
//! - `manifest.json`: format, bridge version, schema version, time;
//! - `data/pocketbrain.sqlite3`: the store (chats, registrations, messages,
//!   cursors, sessions, outbox, tasks, the tool-call ledger), copied with
//!   SQLite's online backup API in one step, so the copy is one consistent
//!   snapshot even while the bridge writes;
//! - `data/whatsapp-device.sqlite3`, when there is one: the WhatsApp device
//!   keys, copied the same way, so a restored bridge reconnects without
//!   pairing again (whoever holds the archive holds the account's link:
//!   it is written readable by its owner only);
//! - `workspace/chats/`: every chat's folder, its `AGENTS.md` and whatever
//!   the agent wrote there (symbolic links are stored as links, never
//!   followed, and not restored).
//!
//! Not in it: OpenCode's own data (its sessions live in OpenCode's data
//! folder; a restored chat whose session OpenCode no longer has gets a new
//! one at its next run, with its folder and `AGENTS.md` intact), the fake
//! channel's phone, and the tool-call folder's transient files.
//!
//! A running bridge holds an exclusive lock on `<data>/bridge.lock`
//! ([`DataLock`]); `restore` takes the same lock, so it refuses while a
//! bridge runs on the folder, and no bridge starts while it restores.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::{self, StoreError};

/// The archive's layout version.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DB: &str = "data/pocketbrain.sqlite3";
const DEVICE: &str = "data/whatsapp-device.sqlite3";
const CHATS: &str = "workspace/chats";

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a bridge is running on {0} (it holds bridge.lock); stop it first (docker compose stop bridge)"
    )]
    Running(PathBuf),
}

type Result<T> = std::result::Result<T, BackupError>;

/// What an archive says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub bridge_version: String,
    pub schema_version: i64,
    pub created_at_ms: i64,
    pub device_store: bool,
    pub chat_files: usize,
}

/// What `verify` found in an archive.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub manifest: Manifest,
    pub chats_registered: i64,
    pub messages: i64,
}

/// An exclusive lock on the data folder, held by a running bridge (and by
/// `restore`); released when dropped or when the process dies.
#[derive(Debug)]
pub struct DataLock(#[allow(dead_code)] File);

impl DataLock {
    /// Takes the lock; `None` when another process holds it.
    pub fn try_acquire(data_dir: &Path) -> std::io::Result<Option<DataLock>> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(data_dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("bridge.lock"))?;
        // SAFETY: flock on a descriptor we own; it does not touch memory.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(Some(DataLock(f)));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        }
    }
}

/// A scratch folder inside `parent` (same file system, owner-only),
/// removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(parent)?;
        let dir = parent.join(format!(".backup-{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the SQLite database at `src` to `dst` in one step of the online
/// backup API (one consistent snapshot), as a single file.
fn copy_db(src: &Path, dst: &Path) -> Result<()> {
    if !store::ops::snapshot(src, dst)? {
        return Err(BackupError::Invalid(format!(
            "{} stayed locked; try again",
            src.display()
        )));
    }
    Ok(())
}

/// Writes the archive to `file` (replacing it only once it is complete).
/// Blocking.
pub fn backup(config: &Config, file: &Path) -> Result<Manifest> {
    use std::os::unix::fs::OpenOptionsExt;
    let db = config.db_path();
    if !db.is_file() {
        return Err(BackupError::Invalid(format!(
            "no database at {} (check PB_DATA_DIR)",
            db.display()
        )));
    }
    let scratch = Scratch::new(&config.data_dir)?;
    let db_copy = scratch.0.join("pocketbrain.sqlite3");
    copy_db(&db, &db_copy)?;
    let schema = store::ops::schema_version_at(&db_copy)?;
    let device = config.whatsapp_db();
    let device_copy = scratch.0.join("whatsapp-device.sqlite3");
    let has_device = device.is_file();
    if has_device {
        copy_db(&device, &device_copy)?;
    }
    let chats = config.workspace.join("chats");
    let chat_files = if chats.is_dir() {
        count_files(&chats)?
    } else {
        0
    };
    let manifest = Manifest {
        format: FORMAT,
        bridge_version: env!("CARGO_PKG_VERSION").into(),
        schema_version: schema,
        created_at_ms: store::now_ms(),
        device_store: has_device,
        chat_files,
    };

    let partial = file.with_extension("partial");
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_mtime((manifest.created_at_ms / 1000).max(0) as u64);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, json.as_slice())?;
    tar.append_path_with_name(&db_copy, DB)?;
    if has_device {
        tar.append_path_with_name(&device_copy, DEVICE)?;
    }
    if chats.is_dir() {
        tar.append_dir_all(CHATS, &chats)?;
    }
    tar.into_inner()?.sync_all()?;
    std::fs::rename(&partial, file)?;
    Ok(manifest)
}

fn count_files(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            n += count_files(&e.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

/// The archive unpacked into `into`: the manifest, and whether it holds
/// a device store. Only plain files and folders under the known names are
/// taken; anything else (links, `..`, absolute paths) is refused.
fn unpack(file: &Path, into: &Path) -> Result<Manifest> {
    let mut archive = tar::Archive::new(File::open(file)?);
    let mut manifest = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(BackupError::Invalid(format!(
                "unsafe path in archive: {}",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        let known = path == Path::new(MANIFEST)
            || path == Path::new(DB)
            || path == Path::new(DEVICE)
            || path.starts_with(CHATS);
        if !known || !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let dest = into.join(&path);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        entry.unpack(&dest)?;
        if path == Path::new(MANIFEST) {
            let m: Manifest = serde_json::from_slice(&std::fs::read(&dest)?)
                .map_err(|e| BackupError::Invalid(format!("manifest: {e}")))?;
            manifest = Some(m);
        }
    }
    let manifest = manifest.ok_or_else(|| {
        BackupError::Invalid(format!("{} is not a PocketBrain backup", file.display()))
    })?;
    if manifest.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "archive format {} is not this build's {FORMAT}",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Checks an unpacked database: integrity, and a schema this build reads.
fn check_db(path: &Path, store: bool) -> Result<(i64, i64)> {
    let ok = store::ops::integrity_check(path)?;
    if ok != "ok" {
        return Err(BackupError::Invalid(format!(
            "{} fails its integrity check: {ok}",
            path.display()
        )));
    }
    if !store {
        return Ok((0, 0));
    }
    let v = store::ops::schema_version_at(path)?;
    if !(1..=store::SCHEMA_VERSION).contains(&v) {
        return Err(BackupError::Invalid(format!(
            "schema version {v}; this build reads 1 to {}",
            store::SCHEMA_VERSION
        )));
    }
    Ok(store::ops::counts_at(path)?)
}

/// Unpacks `file` next to `config`'s data, checks both databases
/// (`PRAGMA integrity_check`, the schema version) and counts what the
/// store holds. Blocking.
pub fn verify(config: &Config, file: &Path) -> Result<Verified> {
    let scratch = Scratch::new(&config.data_dir)?;
    verify_in(file, &scratch.0)
}

fn verify_in(file: &Path, dir: &Path) -> Result<Verified> {
    let manifest = unpack(file, dir)?;
    let db = dir.join(DB);
    if !db.is_file() {
        return Err(BackupError::Invalid("the archive has no database".into()));
    }
    let (chats_registered, messages) = check_db(&db, true)?;
    if manifest.device_store {
        check_db(&dir.join(DEVICE), false)?;
    }
    Ok(Verified {
        manifest,
        chats_registered,
        messages,
    })
}

/// Restores `file` into `config`'s data folder and workspace. Refuses
/// while a bridge runs there, and over an existing database unless
/// `force`. The archive is verified first; nothing is replaced when it
/// fails. Blocking.
pub fn restore(config: &Config, file: &Path, force: bool) -> Result<Verified> {
    crate::owner_only::dir(&config.data_dir)?;
    let _lock = DataLock::try_acquire(&config.data_dir)?
        .ok_or_else(|| BackupError::Running(config.data_dir.clone()))?;
    let db = config.db_path();
    if db.exists() && !force {
        return Err(BackupError::Invalid(format!(
            "{} exists; restoring replaces it: add --force (or restore into an empty PB_DATA_DIR)",
            db.display()
        )));
    }
    let scratch = Scratch::new(&config.data_dir)?;
    let verified = verify_in(file, &scratch.0)?;
    replace_db(&scratch.0.join(DB), &db)?;
    if verified.manifest.device_store {
        replace_db(&scratch.0.join(DEVICE), &config.whatsapp_db())?;
    }
    let chats = scratch.0.join(CHATS);
    if chats.is_dir() {
        copy_tree(&chats, &config.workspace.join("chats"))?;
    }
    Ok(verified)
}

/// Moves the database `from` over `to`, removing `to`'s WAL files first.
fn replace_db(from: &Path, to: &Path) -> Result<()> {
    for f in crate::owner_only::sqlite_companions(to) {
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    std::fs::rename(from, to)?;
    // Whatever mode the archive gave it: owner-only.
    crate::owner_only::file(to)?;
    Ok(())
}

/// Copies the files under `from` into `to`, replacing files of the same
/// name and keeping others.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::try_acquire(dir.path()).unwrap();
        assert!(first.is_some());
        assert!(DataLock::try_acquire(dir.path()).unwrap().is_none());
        drop(first);
        assert!(DataLock::try_acquire(dir.path()).unwrap().is_some());
    }

    #[test]
    fn an_archive_with_an_unsafe_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("evil.tar");
        let mut tar = tar::Builder::new(File::create(&file).unwrap());
        let mut h = tar::Header::new_gnu();
        let body = b"x";
        h.set_size(1);
        h.set_mode(0o644);
        // set_path refuses "..": write the name bytes directly.
        h.as_old_mut().name[..13].copy_from_slice(b"../escaped.md");
        h.set_cksum();
        tar.append(&h, body.as_slice()).unwrap();
        tar.into_inner().unwrap();
        let out = dir.path().join("out");
        let e = unpack(&file, &out).unwrap_err();
        assert!(e.to_string().contains("unsafe path"), "{e}");
        assert!(!dir.path().join("escaped.md").exists());
    }
}
