//! Small OS helpers: clocks, CPU time, pinning, the shared page of the floor.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes (unlike `Instant`).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system) and context switches (voluntary, involuntary) of this process.
pub fn cpu_usage() -> (u64, u64, u64) {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_SELF always exists.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    (
        ns(ru.ru_utime) + ns(ru.ru_stime),
        ru.ru_nvcsw as u64,
        ru.ru_nivcsw as u64,
    )
}

/// Pin the calling thread (the whole process, for our single-threaded roles) to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked by the caller's `cpus()` modulo); the
    // macro only sets a bit in `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; pid 0 is the caller.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Online CPUs (not `available_parallelism`, which shrinks once this process is pinned).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// The CPU a child process is pinned to when pinning is on (the parent takes CPU 0).
pub fn child_cpu() -> usize {
    1 % cpus()
}

/// Mean cost of one `Instant::now()` (every per-iteration sample includes about one).
pub fn timer_overhead_ns() -> f64 {
    let n = 200_000u32;
    let t = Instant::now();
    let mut acc = 0u32;
    for _ in 0..n {
        acc = acc.wrapping_add(
            std::hint::black_box(Instant::now())
                .elapsed()
                .subsec_nanos(),
        );
    }
    std::hint::black_box(acc);
    // Each iteration reads the clock twice.
    t.elapsed().as_nanos() as f64 / f64::from(n) / 2.0
}

/// The 1-, 5- and 15-minute load averages, as the kernel prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Kernel release and CPU model, for the report header.
pub fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("Linux {kernel}, {} x {model}", cpus())
}

/// Shared memory for the floors (a memfd, mapped shared): `AtomicU64` flags and payload
/// bytes at fixed offsets.
pub struct SharedPage {
    fd: OwnedFd,
    ptr: *mut u8,
    len: usize,
}

impl SharedPage {
    /// Bytes mapped by [`SharedPage::create`].
    pub const LEN: usize = 16 << 10;

    /// A new zeroed mapping of [`SharedPage::LEN`] bytes.
    pub fn create() -> io::Result<SharedPage> {
        Self::create_len(Self::LEN)
    }

    /// A new zeroed mapping of `len` bytes (a multiple of the page size).
    pub fn create_len(len: usize) -> io::Result<SharedPage> {
        // SAFETY: a NUL-terminated name and valid flags; returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(c"shmcast-bench-floor".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a valid fd and length.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, len)
    }

    /// Map an inherited memfd, all of it.
    pub fn from_fd(fd: OwnedFd) -> io::Result<SharedPage> {
        let len = std::fs::File::from(fd.try_clone()?).metadata()?.len() as usize;
        if len == 0 {
            return Err(io::Error::other("shared page: empty file"));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedPage> {
        // SAFETY: a fresh shared mapping of a file `len` bytes long; the kernel picks the
        // address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Fault every page in, writable, now (in both processes), so no measurement pays
        // first touches. MADV_POPULATE_WRITE (Linux 5.14) changes no data; where it is
        // missing, reading each page at least maps it.
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: `ptr`/`len` are exactly the mapping just created.
        if unsafe { libc::madvise(ptr, len, MADV_POPULATE_WRITE) } != 0 {
            for off in (0..len).step_by(4096) {
                // SAFETY: in bounds of the fresh mapping; a volatile read of a byte.
                unsafe { std::ptr::read_volatile(ptr.cast::<u8>().add(off)) };
            }
        }
        Ok(SharedPage {
            fd,
            ptr: ptr.cast(),
            len,
        })
    }

    /// The descriptor (to hand to the child).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Bytes mapped.
    pub fn size(&self) -> usize {
        self.len
    }

    /// The first byte of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.ptr
    }

    /// The atomic at `offset` (a multiple of 8 below `len`).
    pub fn atomic(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned (the mapping is page aligned); the mapping lives
        // as long as `self`; both processes access these 8 bytes only through atomics.
        unsafe { &*(self.ptr.add(offset) as *const AtomicU64) }
    }

    /// Copy `src` into the mapping at `offset`.
    ///
    /// # Safety
    /// No other process may access those bytes until the caller publishes them (a Release
    /// store of a flag the reader Acquire-loads before reading).
    pub unsafe fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.len);
        // SAFETY: in bounds (checked); exclusive access is the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) }
    }

    /// Copy bytes at `offset` out into `dst`.
    ///
    /// # Safety
    /// The writer of those bytes must have published them (see [`SharedPage::write`]) and
    /// must not write them again until the caller signals it is done.
    pub unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= self.len);
        // SAFETY: in bounds (checked); no concurrent writer is the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), dst.as_mut_ptr(), dst.len()) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` is our mapping of `len` bytes; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Sleep until `CLOCK_MONOTONIC` reads `at_ns` (returns at once if it has passed).
pub fn sleep_until_mono(at_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; a null remainder is allowed with TIMER_ABSTIME. EINTR only
    // shortens the sleep, which the callers tolerate.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}
