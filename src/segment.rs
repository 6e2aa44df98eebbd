//! Shared-memory segments: creating and opening the backing object (a named POSIX
//! shared-memory object, a file path, or an anonymous memfd), mapping it, validating a
//! segment another process wrote, and the open-file-description (OFD) locks that tell a
//! live peer from a dead one.

use crate::error::{CreateError, OpenError};
use crate::layout::{Geometry, RawLayout, HEADER_SIZE};
use crate::region::{Backing, LockId, Region};
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
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
    /// An anonymous memfd (creation only).
    Anonymous,
}

impl Source {
    fn describe(&self) -> String {
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

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A mapped segment: the mapping, the descriptor it came from (which may be handed to
/// other processes), and a private open file description that carries this handle's OFD
/// liveness locks. Locks belong to a description, not a process: were they taken on a
/// descriptor that a child inherited, the child would keep them alive after this process
/// died. The private description is never handed out.
pub(crate) struct Mapped {
    /// Unmapped on drop.
    _map: MmapRaw,
    file: File,
    locks: File,
    source: Source,
}

/// A new open file description of the object behind `file`, for this handle's locks.
fn private_description(file: &File) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}\0", file.as_raw_fd());
    // SAFETY: NUL-terminated path. No O_NOFOLLOW: /proc fd entries are magic links.
    let raw = cvt(unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: freshly opened descriptor, owned here.
    Ok(unsafe { File::from_raw_fd(raw) })
}

impl Mapped {
    fn lock_op(
        &self,
        cmd: libc::c_int,
        kind: libc::c_short,
        id: LockId,
    ) -> io::Result<libc::flock> {
        // SAFETY: flock is plain old data; all-zero is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = id.byte();
        fl.l_len = 1;
        // l_pid must be 0 for OFD locks.
        fl.l_pid = 0;
        // SAFETY: `locks` is an open descriptor; `fl` is a valid flock for the duration of
        // the call.
        cvt(unsafe { libc::fcntl(self.locks.as_raw_fd(), cmd, &mut fl) })?;
        Ok(fl)
    }

    pub(crate) fn try_lock(&self, id: LockId) -> io::Result<bool> {
        match self.lock_op(libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short, id) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn unlock(&self, id: LockId) {
        // Unlocking a lock we hold cannot fail for a valid descriptor; if it did, closing
        // the descriptor on drop releases it anyway.
        let _ = self.lock_op(libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short, id);
    }

    pub(crate) fn held_by_other(&self, id: LockId) -> bool {
        match self.lock_op(libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, id) {
            Ok(fl) => fl.l_type != libc::F_UNLCK as libc::c_short,
            Err(_) => true,
        }
    }

    /// The descriptor of the backing object (it carries no liveness lock: hand it out).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }
}

/// Options for creating a segment.
pub(crate) struct CreateOptions {
    pub(crate) mode: u32,
}

/// Create and initialize a new segment.
pub(crate) fn create(
    source: Source,
    geo: Geometry,
    opts: &CreateOptions,
) -> Result<Region, CreateError> {
    let file = match &source {
        Source::Name(name) => {
            let c = validate_name(name).map_err(|reason| CreateError::InvalidName {
                name: name.clone(),
                reason,
            })?;
            // SAFETY: `c` is a valid NUL-terminated string.
            let fd = unsafe {
                libc::shm_open(
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_RDWR
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    opts.mode as libc::mode_t,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::AlreadyExists {
                    return Err(CreateError::AlreadyExists(source.describe()));
                }
                return Err(io_create(format!("shm_open {}", source.describe()))(e));
            }
            // SAFETY: `fd` was just opened and is owned by nobody else.
            unsafe { File::from_raw_fd(fd) }
        }
        Source::Path(path) => {
            let c = path_cstring(path).map_err(io_create("bad path"))?;
            // SAFETY: `c` is a valid NUL-terminated path.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_RDWR
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    opts.mode as libc::c_uint,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::AlreadyExists {
                    return Err(CreateError::AlreadyExists(source.describe()));
                }
                return Err(io_create(format!("create {}", source.describe()))(e));
            }
            // SAFETY: as above.
            unsafe { File::from_raw_fd(fd) }
        }
        Source::Anonymous => {
            // SAFETY: the name is a valid C string; flags are valid.
            let fd = unsafe {
                libc::memfd_create(
                    c"shmcast".as_ptr(),
                    libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
                )
            };
            let fd = cvt(fd).map_err(io_create("memfd_create"))?;
            // SAFETY: as above.
            unsafe { File::from_raw_fd(fd) }
        }
    };
    let result = finish_create(file, source.clone(), geo, opts);
    if result.is_err() {
        // Never leave a half-made named object behind.
        let _ = remove_source(&source);
    }
    result
}

fn finish_create(
    file: File,
    source: Source,
    geo: Geometry,
    opts: &CreateOptions,
) -> Result<Region, CreateError> {
    if !matches!(source, Source::Anonymous) {
        // The umask may have narrowed the mode; set exactly what was asked.
        // SAFETY: valid descriptor.
        cvt(unsafe { libc::fchmod(file.as_raw_fd(), opts.mode as libc::mode_t) })
            .map_err(io_create("fchmod"))?;
    }
    file.set_len(geo.total_size).map_err(io_create(format!(
        "size the segment to {} bytes",
        geo.total_size
    )))?;
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
    let map = MmapOptions::new()
        .len(geo.total_size as usize)
        .map_raw(&file)
        .map_err(io_create("mmap the segment"))?;
    let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
    let locks = private_description(&file).map_err(io_create("reopen the segment for locks"))?;
    let mapped = Mapped {
        _map: map,
        file,
        locks,
        source,
    };
    // SAFETY: the mapping covers `total_size` bytes, is page aligned and lives in `mapped`.
    let region = unsafe { Region::from_mapping(base, geo, Backing::Mapped(mapped)) };
    region.initialize();
    Ok(region)
}

/// Options for opening a segment.
pub(crate) struct OpenOptions {
    pub(crate) allow_foreign_owner: bool,
}

/// Open an existing segment by name or path and validate it.
pub(crate) fn open(source: Source, opts: &OpenOptions) -> Result<Region, OpenError> {
    let fd = match &source {
        Source::Name(name) => {
            let c = validate_name(name).map_err(|reason| OpenError::InvalidName {
                name: name.clone(),
                reason,
            })?;
            // SAFETY: valid C string.
            unsafe {
                libc::shm_open(
                    c.as_ptr(),
                    libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0,
                )
            }
        }
        Source::Path(path) => {
            let c = path_cstring(path).map_err(io_open("bad path"))?;
            // SAFETY: valid C string.
            unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            }
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
    map_and_validate(file, source, opts)
}

/// Open a segment from a descriptor (a memfd handed over by another process). The
/// descriptor is duplicated; liveness locks go on a private description as for every
/// mapped segment.
pub(crate) fn open_fd(fd: BorrowedFd<'_>, opts: &OpenOptions) -> Result<Region, OpenError> {
    let owned = fd
        .try_clone_to_owned()
        .map_err(io_open("duplicate the segment descriptor"))?;
    map_and_validate(File::from(owned), Source::Anonymous, opts)
}

fn map_and_validate(file: File, source: Source, opts: &OpenOptions) -> Result<Region, OpenError> {
    let meta = file.metadata().map_err(io_open("fstat the segment"))?;
    if !opts.allow_foreign_owner {
        use std::os::unix::fs::MetadataExt;
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
    if size < HEADER_SIZE as u64 {
        return Err(crate::error::SegmentError::Truncated {
            size,
            needed: HEADER_SIZE as u64,
        }
        .into());
    }
    let len = usize::try_from(size)
        .map_err(|_| io_open("segment size")(io::ErrorKind::InvalidData.into()))?;
    let map = MmapOptions::new()
        .len(len)
        .map_raw(&file)
        .map_err(io_open("mmap the segment"))?;
    let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
    // SAFETY: the mapping is at least HEADER_SIZE bytes and page aligned; the layout line
    // holds only atomics.
    let header = unsafe { &*(base.as_ptr() as *const crate::layout::Header) };
    let raw = RawLayout::load(&header.layout);
    let geo = Geometry::validate(&raw, size)?;
    let locks = private_description(&file).map_err(io_open("reopen the segment for locks"))?;
    let mapped = Mapped {
        _map: map,
        file,
        locks,
        source,
    };
    // SAFETY: validation checked `total_size <= size`, the mapped length.
    Ok(unsafe { Region::from_mapping(base, geo, Backing::Mapped(mapped)) })
}

fn remove_source(source: &Source) -> io::Result<()> {
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

/// Remove a named segment. Processes that have it mapped keep using it; new ones cannot
/// open it. Use this to clear a segment left behind by a producer that crashed.
///
/// # Errors
/// An invalid name, or the OS error (`NotFound` if there is no such segment).
///
/// # Examples
/// ```
/// let err = shmcast::remove("shmcast-doc-no-such-segment").unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
/// ```
pub fn remove(name: &str) -> io::Result<()> {
    remove_source(&Source::Name(name.to_string()))
}

/// Remove the backing object of `mapped` (used by a producer on drop).
pub(crate) fn remove_backing(mapped: &Mapped) -> io::Result<()> {
    remove_source(&mapped.source)
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
