//! What a command is pointed at: a named segment (`/dev/shm/<name>`) or a segment file.

use crate::error::{self, Access, Failure};
use shmcast::{OpenError, Snapshot};
use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Where named segments live (`shm_open` on Linux).
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// A segment, by name or by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A POSIX shared-memory name, as the producer was given it.
    Name(String),
    /// A segment file (tmpfs, hugetlbfs, ...).
    Path(PathBuf),
}

impl Target {
    /// A name, or a path if it contains a '/' (a name never does).
    pub(crate) fn parse(arg: &str) -> Target {
        if arg.contains('/') {
            Target::Path(PathBuf::from(arg))
        } else {
            Target::Name(arg.to_string())
        }
    }

    /// How messages refer to it: `'name'` (as the core's messages do) or the path.
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Name(n) => format!("'{n}'"),
            Target::Path(p) => p.display().to_string(),
        }
    }

    /// The file behind it, for the file-type check (a name that is not valid has none).
    fn file(&self) -> Option<PathBuf> {
        match self {
            Target::Name(n) if valid_name(n) => Some(Path::new(SHM_DIR).join(n)),
            Target::Name(_) => None,
            Target::Path(p) => Some(p.clone()),
        }
    }

    /// Refuse what is not a regular file before the core opens it: opening a FIFO blocks
    /// until a writer comes, and a device or socket is no segment either. Anything the
    /// check cannot see (a missing file, no permission) is left to the core to report.
    pub(crate) fn check_file_type(&self) -> Result<(), Failure> {
        match self.file_kind() {
            None => Ok(()),
            Some(kind) => Err(Failure::new(format!(
                "{} is {kind}, not a shmcast segment",
                self.describe()
            ))),
        }
    }

    /// What the file is if it exists and is not a regular file ("a FIFO", ...).
    pub(crate) fn file_kind(&self) -> Option<&'static str> {
        let meta = std::fs::symlink_metadata(self.file()?).ok()?;
        not_a_file(meta.file_type())
    }

    /// A read-only snapshot, taken without attaching.
    pub(crate) fn inspect(&self) -> Result<Snapshot, Failure> {
        self.check_file_type()?;
        self.inspect_unchecked()
            .map_err(|e| error::open(self, &e, Access::Inspect))
    }

    /// [`Target::inspect`] without the file-type check, with the core's error.
    pub(crate) fn inspect_unchecked(&self) -> Result<Snapshot, OpenError> {
        match self {
            Target::Name(n) => shmcast::inspect(n),
            Target::Path(p) => shmcast::inspect_path(p),
        }
    }
}

/// What a file type is if it is not a regular file ("a FIFO", ...), for messages.
pub(crate) fn not_a_file(t: FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_symlink() {
        Some("a symbolic link (shmcast does not follow links)")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// Would the core accept this name? (Its rule: 1 to `MAX_NAME_LEN` bytes of
/// `[A-Za-z0-9._-]`, not starting with '.'.) Only decides whether to look at the file
/// first; the core still validates and reports.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= shmcast::MAX_NAME_LEN
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_with_a_slash_is_a_path() {
        assert_eq!(Target::parse("ticks"), Target::Name("ticks".into()));
        assert_eq!(
            Target::parse("./ticks"),
            Target::Path(PathBuf::from("./ticks"))
        );
        assert_eq!(
            Target::parse("/dev/shm/ticks"),
            Target::Path(PathBuf::from("/dev/shm/ticks"))
        );
    }

    #[test]
    fn invalid_names_have_no_file_to_check() {
        for bad in ["", ".hidden", "..", "sp ace", "é"] {
            assert_eq!(Target::Name(bad.into()).file(), None, "{bad:?}");
        }
        assert_eq!(
            Target::Name("a.b-c_d".into()).file(),
            Some(PathBuf::from("/dev/shm/a.b-c_d"))
        );
    }
}
