//! Owner-only files and folders, whatever the umask: the data folder is
//! 0700 and the files that hold messages, keys and tokens are 0600.
//!
//! A file is created with its final mode (never readable by others, not
//! even for a moment), and one that exists already (an older install, a
//! restore, a permissive umask) is narrowed. SQLite gives its `-wal` and
//! `-shm` files the database file's own mode, so a 0600 database keeps its
//! companions 0600 too; those that exist already are narrowed here.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the data folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files in it that hold secrets or messages.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` (and any missing parent, owner-only too) and narrows it
/// to [`DIR_MODE`]. The folder itself may be a symlink the owner made (a
/// data folder on another disk): its target is narrowed.
pub fn dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    let now = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if now & !DIR_MODE != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(now & DIR_MODE))?;
    }
    Ok(())
}

/// Creates `path` empty if missing (never truncating one that exists) and
/// narrows it to [`FILE_MODE`].
pub fn file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    narrow(path, FILE_MODE)
}

/// A SQLite database file, made by [`file`] before SQLite opens it, and its
/// journal files where they exist.
pub fn sqlite(path: &Path) -> io::Result<()> {
    file(path)?;
    for companion in sqlite_companions(path) {
        match narrow(&companion, FILE_MODE) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r?,
        }
    }
    Ok(())
}

/// `path`'s `-wal`, `-shm` and `-journal` files.
pub fn sqlite_companions(path: &Path) -> [PathBuf; 3] {
    ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    })
}

/// Takes every bit beyond `mode` away (never adds one); a symlink is not
/// followed (it is refused, as something else put it there).
fn narrow(path: &Path, mode: u32) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symbolic link; the bridge keeps its data in plain files",
            path.display()
        )));
    }
    let now = meta.permissions().mode() & 0o7777;
    if now & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(now & mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Whatever the umask (0 here, the most permissive) and whatever the
    /// modes an older install left, the folder ends 0700 and the database
    /// and its journal files 0600; an existing file keeps its contents.
    #[test]
    fn modes_hold_whatever_the_umask_and_older_files() {
        // SAFETY: umask has no preconditions; this test binary's other
        // tests create no files whose modes they check.
        let old = unsafe { libc::umask(0) };
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("a/data");
        dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);

        let db = data.join("x.sqlite3");
        sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
                .unwrap();
            // SQLite made its WAL and SHM files with the database's mode.
            for companion in &sqlite_companions(&db)[..2] {
                assert_eq!(mode(companion), 0o600, "{}", companion.display());
            }
        }

        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        let wal = &sqlite_companions(&db)[0];
        std::fs::write(wal, b"").unwrap();
        std::fs::set_permissions(wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        dir(&data).unwrap();
        sqlite(&db).unwrap();
        assert_eq!((mode(&data), mode(&db), mode(wal)), (0o700, 0o600, 0o600));
        let c = rusqlite::Connection::open(&db).unwrap();
        let x: i64 = c.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 1, "the database was kept");

        // Never widened: a 0400 file stays 0400.
        let ro = data.join("ro");
        std::fs::write(&ro, b"k").unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o400)).unwrap();
        file(&ro).unwrap();
        assert_eq!(mode(&ro), 0o400);

        // A data folder that is a symlink to another disk is followed.
        let elsewhere = tmp.path().join("disk");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
        let linked = tmp.path().join("linked-data");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        dir(&linked).unwrap();
        assert_eq!(mode(&elsewhere), 0o700);

        // A file's symlink in its place is refused, its target untouched.
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = data.join("link.sqlite3");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(sqlite(&link).is_err());
        assert_eq!(mode(&target), 0o644);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
    }
}
