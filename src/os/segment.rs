//! Shared-memory objects: a named POSIX shared-memory object, a file at a path, or an
//! anonymous memfd; created exclusively, opened without following links, mapped shared,
//! and unlinked only while the name still refers to the object this process mapped.

use super::cvt;
use crate::error::{CreateError, OpenError};
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Longest accepted shared-memory name (without the leading `/`).
pub const MAX_NAME_LEN: usize = 200;

/// What backs a segment.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A POSIX shared-memory object (`/dev/shm/<name>`).
    Name(String),
    /// A file at a path (tmpfs, hugetlbfs, ...).
    Path(PathBuf),
    /// An anonymous memfd (creation), or a descriptor handed over (opening).
    Anonymous,
}

impl Source {
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::Name(n) => format!("'{n}'"),
            Source::Path(p) => format!("{}", p.display()),
            Source::Anonymous => "(anonymous memfd)".to_string(),
        }
    }
}

/// Check a shared-memory name: 1 to [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`, not starting
/// with `.`, so it can neither escape `/dev/shm` nor name a hidden or special entry.
pub(crate) fn validate_name(name: &str) -> Result<CString, &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("the name is longer than 200 bytes");
    }
    if name.starts_with('.') {
        return Err("the name starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("the name may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(CString::new(format!("/{name}")).expect("validated: no NUL bytes"))
}

fn io_create(context: impl Into<String>) -> impl FnOnce(io::Error) -> CreateError {
    let context = context.into();
    move |source| CreateError::Io { context, source }
}

fn io_open(context: impl Into<String>) -> impl FnOnce(io::Error) -> OpenError {
    let context = context.into();
    move |source| OpenError::Io { context, source }
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A shared mapping of a whole object, with the descriptor it came from.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Unmapped on drop.
    map: MmapRaw,
    file: File,
    source: Source,
    /// Device and inode of the object, to recognise it behind its name later.
    identity: (u64, u64),
}

/// How to map an object.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MapOptions {
    /// Fault every page in now (`MAP_POPULATE`), so the first lap through the ring takes
    /// no page fault.
    pub(crate) populate: bool,
    /// Lock the mapping in memory (`mlock`): never paged out.
    pub(crate) lock: bool,
}

/// `statfs` magic of hugetlbfs.
const HUGETLBFS_MAGIC: libc::c_long = 0x9584_58f6;

/// The huge page size of the file system holding `file`, if it is hugetlbfs (a file there
/// must be sized and mapped in whole huge pages).
fn huge_page_size(file: &File) -> io::Result<Option<u64>> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, valid out pointer.
    cvt(unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) })?;
    Ok((st.f_type as libc::c_long == HUGETLBFS_MAGIC).then_some(st.f_bsize as u64))
}

impl Mapping {
    fn new(
        file: File,
        source: Source,
        len: u64,
        read_only: bool,
        how: MapOptions,
    ) -> io::Result<Mapping> {
        let meta = file.metadata()?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let mut options = MmapOptions::new();
        options.len(len);
        if how.populate {
            options.populate();
        }
        let map = if read_only {
            options.map_raw_read_only(&file)?
        } else {
            options.map_raw(&file)?
        };
        if how.lock {
            // SAFETY: the range is exactly the mapping just made.
            cvt(unsafe { libc::mlock(map.as_ptr().cast(), map.len()) })?;
        }
        Ok(Mapping {
            map,
            file,
            source,
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Start of the mapping (page aligned).
    pub(crate) fn base(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_mut_ptr()).expect("mmap never returns null")
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The object's descriptor (it carries no liveness lock: it may be handed out).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The file it was mapped from.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The object's permission bits, if it has any (a memfd's are not meaningful).
    pub(crate) fn mode(&self) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        match self.source {
            Source::Anonymous => None,
            _ => self
                .file
                .metadata()
                .ok()
                .map(|m| m.permissions().mode() & 0o777),
        }
    }

    /// Remove the object's name, if it has one and the name still refers to this object:
    /// a successor that re-created the name after ours was removed keeps its segment.
    /// (A name replaced between the check and the unlink is not detected; that window is a
    /// few system calls wide and needs a concurrent remove and create of the same name.)
    pub(crate) fn unlink_if_ours(&self) -> io::Result<bool> {
        let current = match &self.source {
            Source::Anonymous => return Ok(false),
            Source::Name(name) => {
                let c = validate_name(name)
                    .map_err(|r| io::Error::new(io::ErrorKind::InvalidInput, r))?;
                // SAFETY: valid C string; the descriptor is closed right below.
                let fd = unsafe {
                    libc::shm_open(
                        c.as_ptr(),
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        0,
                    )
                };
                if fd < 0 {
                    let e = io::Error::last_os_error();
                    return match e.kind() {
                        io::ErrorKind::NotFound => Ok(false),
                        _ => Err(e),
                    };
                }
                // SAFETY: freshly opened, owned here.
                let f = unsafe { File::from_raw_fd(fd) };
                f.metadata()?
            }
            Source::Path(p) => match std::fs::symlink_metadata(p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            },
        };
        if (current.dev(), current.ino()) != self.identity {
            return Ok(false);
        }
        unlink(&self.source)?;
        Ok(true)
    }
}

/// Remove the name (or file) of `source`. Processes that have the object mapped keep using
/// it; new ones cannot open it.
pub(crate) fn unlink(source: &Source) -> io::Result<()> {
    match source {
        Source::Name(name) => {
            let c =
                validate_name(name).map_err(|r| io::Error::new(io::ErrorKind::InvalidInput, r))?;
            // SAFETY: valid C string.
            cvt(unsafe { libc::shm_unlink(c.as_ptr()) }).map(drop)
        }
        Source::Path(p) => std::fs::remove_file(p),
        Source::Anonymous => Ok(()),
    }
}

/// Create a new object of `size` bytes (exclusively: never an existing one) and map it.
/// Named objects and files get exactly `mode`; a memfd is sealed against resizing; a file on
/// hugetlbfs is sized up to whole huge pages.
pub(crate) fn create(
    source: Source,
    size: u64,
    mode: u32,
    how: MapOptions,
) -> Result<Mapping, CreateError> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let fd = match &source {
        Source::Name(name) => {
            let c = validate_name(name).map_err(|reason| CreateError::InvalidName {
                name: name.clone(),
                reason,
            })?;
            // SAFETY: `c` is a valid NUL-terminated string.
            unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::mode_t) }
        }
        Source::Path(path) => {
            let c = path_cstring(path).map_err(io_create("bad path"))?;
            // SAFETY: `c` is a valid NUL-terminated path.
            unsafe { libc::open(c.as_ptr(), flags, mode as libc::c_uint) }
        }
        Source::Anonymous => {
            // SAFETY: the name is a valid C string; flags are valid.
            unsafe {
                libc::memfd_create(
                    c"shmcast".as_ptr(),
                    libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
                )
            }
        }
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::AlreadyExists {
            return Err(CreateError::AlreadyExists(source.describe()));
        }
        return Err(io_create(format!("create {}", source.describe()))(e));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let result = finish_create(file, source.clone(), size, mode, how);
    if result.is_err() {
        // Never leave a half-made object behind; it is ours (O_EXCL).
        let _ = unlink(&source);
    }
    result
}

fn finish_create(
    file: File,
    source: Source,
    size: u64,
    mode: u32,
    how: MapOptions,
) -> Result<Mapping, CreateError> {
    if !matches!(source, Source::Anonymous) {
        // The umask may have narrowed the mode; set exactly what was asked.
        // SAFETY: valid descriptor.
        cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })
            .map_err(io_create("fchmod"))?;
    }
    let size = match huge_page_size(&file).map_err(io_create("statfs the segment"))? {
        Some(page) => size.div_ceil(page) * page,
        None => size,
    };
    file.set_len(size)
        .map_err(io_create(format!("size the segment to {size} bytes")))?;
    if matches!(source, Source::Anonymous) {
        // A memfd that nobody can shrink or grow: a peer cannot turn our mapping into SIGBUS.
        // SAFETY: valid descriptor, valid seal flags.
        cvt(unsafe {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        })
        .map_err(io_create("seal the memfd"))?;
    }
    Mapping::new(file, source, size, false, how).map_err(|e| {
        let what = if how.lock && matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EPERM)) {
            "map and lock the segment (RLIMIT_MEMLOCK may be too low)"
        } else {
            "mmap the segment"
        };
        CreateError::Io {
            context: what.into(),
            source: e,
        }
    })
}

/// Options for opening an object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenOptions {
    /// Accept an object owned by another user.
    pub(crate) allow_foreign_owner: bool,
    /// The smallest size that can be a segment (a header).
    pub(crate) min_size: u64,
    /// Open and map for reading only (inspection).
    pub(crate) read_only: bool,
    /// How to map it.
    pub(crate) map: MapOptions,
}

/// Open an existing object by name or path and map all of it.
pub(crate) fn open(source: Source, opts: &OpenOptions) -> Result<Mapping, OpenError> {
    let access = if opts.read_only {
        libc::O_RDONLY
    } else {
        libc::O_RDWR
    };
    // O_NONBLOCK: opening a FIFO someone put under the name must not wait for a writer (it
    // is refused below, as every object that is not a regular file). Without effect on
    // regular files.
    let flags = access | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let fd = match &source {
        Source::Name(name) => {
            let c = validate_name(name).map_err(|reason| OpenError::InvalidName {
                name: name.clone(),
                reason,
            })?;
            // SAFETY: valid C string.
            unsafe { libc::shm_open(c.as_ptr(), flags, 0) }
        }
        Source::Path(path) => {
            let c = path_cstring(path).map_err(io_open("bad path"))?;
            // SAFETY: valid C string.
            unsafe { libc::open(c.as_ptr(), flags) }
        }
        Source::Anonymous => {
            return Err(OpenError::NotFound(
                "an anonymous segment has no name; open its fd".into(),
            ))
        }
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Err(OpenError::NotFound(source.describe()));
        }
        return Err(io_open(format!("open {}", source.describe()))(e));
    }
    // SAFETY: freshly opened descriptor, owned here.
    let file = unsafe { File::from_raw_fd(fd) };
    map_existing(file, source, opts)
}

/// Open the object behind a descriptor (a memfd handed over by another process). The
/// descriptor is duplicated, not consumed.
pub(crate) fn open_fd(fd: BorrowedFd<'_>, opts: &OpenOptions) -> Result<Mapping, OpenError> {
    let owned = fd
        .try_clone_to_owned()
        .map_err(io_open("duplicate the segment descriptor"))?;
    map_existing(File::from(owned), Source::Anonymous, opts)
}

fn map_existing(file: File, source: Source, opts: &OpenOptions) -> Result<Mapping, OpenError> {
    let meta = file.metadata().map_err(io_open("fstat the segment"))?;
    if !meta.file_type().is_file() {
        return Err(crate::error::SegmentError::NotAFile.into());
    }
    if !opts.allow_foreign_owner {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err(OpenError::ForeignOwner {
                owner: meta.uid(),
                uid,
            });
        }
    }
    let size = meta.len();
    if size < opts.min_size {
        return Err(crate::error::SegmentError::Truncated {
            size,
            needed: opts.min_size,
        }
        .into());
    }
    Mapping::new(file, source, size, opts.read_only, opts.map).map_err(io_open(if opts.map.lock {
        "map and lock the segment (RLIMIT_MEMLOCK may be too low)"
    } else {
        "mmap the segment"
    }))
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names_that_could_escape_or_hide_are_refused() {
        for bad in [
            "", ".", "..", "../etc", "a/b", "/abs", ".hidden", "sp ace", "nul\0", "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(validate_name(&"x".repeat(201)).is_err());
    }

    #[test]
    fn plain_names_are_accepted_with_a_leading_slash() {
        assert_eq!(
            validate_name("ticks-1.v2_a").unwrap().to_str().unwrap(),
            "/ticks-1.v2_a"
        );
        assert!(validate_name(&"x".repeat(200)).is_ok());
    }
}
