//! Operations on database files by path, apart from the running store's
//! connection: the consistent copy `backup` takes, the checks `restore`
//! and `doctor` run on a file (read-only), and the doctor's look at the
//! WhatsApp device store. Each opens its own connection and closes it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::Result;
use super::overview::schema_version;

fn read_only(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Copies the SQLite database at `src` to `dst` in one step of the online
/// backup API (one consistent snapshot), as a single file. `false` when
/// `src` stayed locked through every retry (about five seconds).
pub fn snapshot(src: &Path, dst: &Path) -> Result<bool> {
    let from = Connection::open(src)?;
    from.busy_timeout(Duration::from_secs(10))?;
    let mut to = Connection::open(dst)?;
    {
        use rusqlite::backup::{Backup, StepResult};
        let b = Backup::new(&from, &mut to)?;
        // Every page in one step (-1): one read transaction, one snapshot.
        // Busy or locked: another connection holds a lock; wait a little.
        let mut tries = 0;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return Ok(false),
            }
        }
    }
    let _: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    Ok(true)
}

/// The schema version (`PRAGMA user_version`) of the database at `path`,
/// read-only.
pub fn schema_version_at(path: &Path) -> Result<i64> {
    Ok(schema_version(&read_only(path)?)?)
}

/// What `PRAGMA integrity_check` says of the database at `path` (`ok`
/// when intact), read-only.
pub fn integrity_check(path: &Path) -> Result<String> {
    Ok(read_only(path)?.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
}

/// How many chats are registered and how many messages the store file at
/// `path` holds, read-only.
pub fn counts_at(path: &Path) -> Result<(i64, i64)> {
    Ok(read_only(path)?.query_row(
        "SELECT (SELECT COUNT(*) FROM registered_chats), (SELECT COUNT(*) FROM messages)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// The schema version of the store file at `path` and what `PRAGMA
/// quick_check` says of it (`ok` when intact), read-only, waiting up to
/// five seconds for a writer.
pub fn quick_check(path: &Path) -> Result<(i64, String)> {
    let c = read_only(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    let version = schema_version(&c)?;
    let quick: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    Ok((version, quick))
}

/// The folder of the first registered chat in the store file at `path`
/// (the main chat first, then the oldest registration), read-only.
pub fn first_chat_folder(path: &Path) -> Result<Option<String>> {
    let c = read_only(path)?;
    Ok(c.query_row(
        "SELECT folder FROM registered_chats ORDER BY is_main DESC, registered_at LIMIT 1",
        [],
        |r| r.get(0),
    )
    .map(Some)
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })?)
}

/// Whether the WhatsApp device store at `path` holds a paired identity,
/// read-only, waiting up to five seconds for a writer.
pub fn device_paired(path: &Path) -> Result<bool> {
    let c = read_only(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    // A paired device has its account (signed by the phone) and number.
    Ok(c.query_row(
        "SELECT COUNT(*) FROM device WHERE account IS NOT NULL AND pn != ''",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)?)
}
