//! Reading and writing in folders the agent can write to.
//!
//! The agent has a shell, so anything in the workspace (and the tool-call
//! folder) may be a symlink it planted, pointing at the bridge's database,
//! the WhatsApp device keys or `/etc/passwd`. Every path the bridge opens
//! there goes through a [`SafeDir`]: a directory file descriptor reached
//! from a trusted root (a configured path) one component at a time with
//! `O_NOFOLLOW`, so no name below the root is resolved through a symlink,
//! and no check can be raced by swapping a component after it was checked.
//!
//! - A symlink where a folder belongs is replaced by a real folder (logged).
//! - Writes go to a fresh temp file (`O_CREAT|O_EXCL|O_NOFOLLOW`) in the same
//!   folder, renamed over the target: a planted symlink at the target is
//!   replaced, never followed.
//! - Reads open with `O_NOFOLLOW|O_NONBLOCK` (a planted FIFO cannot block
//!   the bridge), take regular files only, and read at most a given number
//!   of bytes through the opened handle.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::SystemTime;

/// An open directory; names inside it are resolved without following symlinks.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Limited {
    /// The whole file (at most `max` bytes).
    Whole(Vec<u8>),
    /// The file is larger than `max`; this many bytes or more.
    TooLarge(u64),
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not found")]
    NotFound,
    #[error("is a symlink (not followed)")]
    Symlink,
    #[error("is not a regular file")]
    NotAFile,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The kind of an entry, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// An entry's kind and modification time, without following symlinks.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub kind: Kind,
    pub modified: SystemTime,
    pub inode: u64,
    pub len: u64,
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// One plain name: no separators, not `.` or `..`.
fn plain(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a plain file name: {name:?}"),
        ));
    }
    cstr(name)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl SafeDir {
    /// Opens a trusted, configured directory (symlinks in its own path are
    /// the owner's choice and followed), creating it when missing.
    pub fn open_root(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let c = cstr(path.as_os_str())?;
        // SAFETY: a valid C string; the returned fd is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just opened and is not owned elsewhere.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens `root/rel...`, creating missing folders; a symlink (or any
    /// non-folder) where a folder belongs is replaced by a real folder.
    pub fn open_path(root: &Path, rel: &[&str]) -> io::Result<Self> {
        Self::open_root(root)?.subpath(rel)
    }

    /// Opens (creating when missing) the folder `name` inside this one,
    /// never through a symlink: one planted there is removed and replaced.
    pub fn subdir(&self, name: &str) -> io::Result<Self> {
        let c = plain(OsStr::new(name))?;
        for _ in 0..3 {
            match self.openat(&c, DIR_FLAGS, 0) {
                Ok(fd) => return Ok(Self { fd }),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                    tracing::warn!(
                        name,
                        "a symlink or file stood where a folder belongs (planted?); replaced by a folder"
                    );
                    // SAFETY: valid fd and C string.
                    check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) })?;
                }
                Err(e) => return Err(e),
            }
            // SAFETY: valid fd and C string.
            let made = check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o755) });
            if let Err(e) = made
                && e.raw_os_error() != Some(libc::EEXIST)
            {
                return Err(e);
            }
        }
        Err(io::Error::other(format!(
            "{name}: kept changing while it was opened"
        )))
    }

    /// Opens the existing folder `name` inside this one for reading: never
    /// through a symlink, and nothing is created or replaced (for paths the
    /// agent names).
    pub fn descend(&self, name: &str) -> Result<Self, ReadError> {
        let c = plain(OsStr::new(name))?;
        match self.openat(&c, DIR_FLAGS, 0) {
            Ok(fd) => Ok(Self { fd }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(ReadError::NotFound),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(ReadError::Symlink),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                // O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR on some
                // systems: tell the two apart.
                match self.stat(OsStr::new(name))? {
                    Some(s) if s.kind == Kind::Symlink => Err(ReadError::Symlink),
                    _ => Err(ReadError::NotAFile),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `rel...` below this folder, as [`SafeDir::subdir`] does each
    /// step; an empty `rel` is this folder again.
    pub fn subpath(&self, rel: &[&str]) -> io::Result<Self> {
        let mut dir = self.try_clone()?;
        for part in rel {
            dir = dir.subdir(part)?;
        }
        Ok(dir)
    }

    /// Another handle on this folder.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    fn openat(&self, name: &CStr, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
        // SAFETY: valid fd and C string; the returned fd is owned below.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), flags, mode) })?;
        // SAFETY: fd was just opened and is not owned elsewhere.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Writes `name` atomically: a fresh temp file in this folder, renamed
    /// over it. A symlink at `name` is replaced, never followed.
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_from(name, &mut &bytes[..])
    }

    /// [`SafeDir::write`], with the contents streamed from `reader`.
    pub fn write_from(&self, name: &str, reader: &mut dyn Read) -> io::Result<()> {
        let target = plain(OsStr::new(name))?;
        let tmp_name = format!(".{name}.{:016x}.pbtmp", rand::random::<u64>());
        let tmp = plain(OsStr::new(&tmp_name))?;
        let fd = self.openat(
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )?;
        let mut file = std::fs::File::from(fd);
        let written = io::copy(reader, &mut file).and_then(|_| file.flush());
        // SAFETY: valid fd and C strings.
        let renamed = written.and_then(|()| {
            check(unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    tmp.as_ptr(),
                    self.fd.as_raw_fd(),
                    target.as_ptr(),
                )
            })
        });
        if let Err(e) = renamed {
            // SAFETY: valid fd and C string.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), tmp.as_ptr(), 0) };
            return Err(e);
        }
        Ok(())
    }

    /// Reads the regular file `name`, at most `max` bytes, through one
    /// handle opened without following a symlink (and without blocking on
    /// a FIFO).
    pub fn read_limited(&self, name: &OsStr, max: u64) -> Result<Limited, ReadError> {
        let c = plain(name)?;
        let fd = match self.openat(
            &c,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(ReadError::NotFound),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadError::Symlink),
            Err(e) => return Err(e.into()),
        };
        let file = std::fs::File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(ReadError::NotAFile);
        }
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Ok(Limited::TooLarge(bytes.len() as u64));
        }
        Ok(Limited::Whole(bytes))
    }

    /// `lstat` of `name`; `None` when it does not exist.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        let c = plain(name)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, C string and out pointer.
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        let modified = SystemTime::UNIX_EPOCH
            + std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        Ok(Some(Stat {
            kind,
            modified,
            inode: st.st_ino,
            len: st.st_size.max(0) as u64,
        }))
    }

    /// Moves `name` to `dest/new_name` (both folders on one file system);
    /// a symlink is moved as the link itself.
    pub fn rename_to(&self, name: &OsStr, dest: &SafeDir, new_name: &OsStr) -> io::Result<()> {
        let (from, to) = (plain(name)?, plain(new_name)?);
        // SAFETY: valid fds and C strings.
        check(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                from.as_ptr(),
                dest.fd.as_raw_fd(),
                to.as_ptr(),
            )
        })
        .map(drop)
    }

    /// Removes the file (or symlink) `name`; gone already is fine.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let c = plain(name)?;
        // SAFETY: valid fd and C string.
        match check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes `name` and, for a folder, everything in it, without ever
    /// following a symlink: a symlink (at `name` or anywhere below) is
    /// removed as the link itself, and what it points to is untouched.
    /// Gone already is fine.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        let c = plain(name)?;
        match self.openat(&c, DIR_FLAGS, 0) {
            Ok(fd) => {
                let dir = Self { fd };
                for entry in dir.names()? {
                    dir.remove_tree(&entry)?;
                }
                drop(dir);
                // SAFETY: valid fd and C string.
                match check(unsafe {
                    libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR)
                }) {
                    Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
                    _ => Ok(()),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            // A symlink (ELOOP; ENOTDIR on some systems) or a file.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                self.remove(name)
            }
            Err(e) => Err(e),
        }
    }

    /// The names in this folder (without `.` and `..`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // fdopendir takes the fd over: give it a duplicate.
        // SAFETY: valid fd.
        let dup = check(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: dup is ours; on success the DIR owns it.
        let dirp = unsafe { libc::fdopendir(dup) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so dup is still ours.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        // A duplicate shares the read position: start from the top.
        // SAFETY: valid DIR.
        unsafe { libc::rewinddir(dirp) };
        let mut out = Vec::new();
        loop {
            // SAFETY: valid DIR; the entry is copied before the next call.
            let ent = unsafe { libc::readdir(dirp) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is a NUL-terminated array inside the entry.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes != b"." && bytes != b".." {
                out.push(OsString::from_vec(bytes.to_vec()));
            }
        }
        // SAFETY: valid DIR, closed once (this closes dup too).
        unsafe { libc::closedir(dirp) };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_planted_symlink_target_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside.txt");
        std::fs::write(&outside, "precious").unwrap();
        let root = t.path().join("ws");
        std::fs::create_dir_all(&root).unwrap();
        symlink(&outside, root.join("AGENTS.md")).unwrap();
        let dir = SafeDir::open_root(&root).unwrap();
        dir.write("AGENTS.md", b"fresh").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(root.join("AGENTS.md")).unwrap(),
            "fresh"
        );
        assert!(!root.join("AGENTS.md").is_symlink());
        // No temp files left behind.
        assert_eq!(dir.names().unwrap(), vec![OsString::from("AGENTS.md")]);
    }

    #[test]
    fn a_symlinked_folder_is_replaced_by_a_real_one() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let root = t.path().join("ws");
        std::fs::create_dir_all(&root).unwrap();
        symlink(&outside, root.join("plugin")).unwrap();
        let dir = SafeDir::open_path(&root, &["plugin", "deeper"]).unwrap();
        dir.write("x.ts", b"code").unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        assert!(root.join("plugin").is_dir() && !root.join("plugin").is_symlink());
        assert_eq!(
            std::fs::read_to_string(root.join("plugin/deeper/x.ts")).unwrap(),
            "code"
        );
    }

    #[test]
    fn reads_refuse_symlinks_and_fifos_and_stop_at_the_limit() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("secret"), "top secret").unwrap();
        std::fs::write(t.path().join("small"), "12345").unwrap();
        symlink(t.path().join("secret"), t.path().join("link")).unwrap();
        let fifo = CString::new(t.path().join("fifo").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let dir = SafeDir::open_root(t.path()).unwrap();
        assert!(matches!(
            dir.read_limited(OsStr::new("link"), 100),
            Err(ReadError::Symlink)
        ));
        assert!(matches!(
            dir.read_limited(OsStr::new("fifo"), 100),
            Err(ReadError::NotAFile)
        ));
        assert!(matches!(
            dir.read_limited(OsStr::new("nope"), 100),
            Err(ReadError::NotFound)
        ));
        assert_eq!(
            dir.read_limited(OsStr::new("small"), 5).unwrap(),
            Limited::Whole(b"12345".to_vec())
        );
        assert_eq!(
            dir.read_limited(OsStr::new("small"), 4).unwrap(),
            Limited::TooLarge(5)
        );
        assert!(dir.read_limited(OsStr::new("../x"), 4).is_err());
        assert_eq!(
            dir.stat(OsStr::new("link")).unwrap().unwrap().kind,
            Kind::Symlink
        );
    }
}
