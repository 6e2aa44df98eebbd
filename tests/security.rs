//! Security of segments (issue 7): permissions, exclusive creation, symlinks, ownership,
//! hostile peers that scribble over what they can write, and resizing.
//!
//! Names that could escape `/dev/shm` are refused by tests/bad_arguments.rs, as is creating
//! a name or a path that exists; what is here complements them.
//!
//! # What remains (not prevented, documented)
//! - **A named or path segment can be truncated** by any process that may open it for
//!   writing (with the default mode 0600: processes of the same user, and root). Every
//!   process that has it mapped then dies of `SIGBUS` when it touches a page past the new
//!   end: the kernel offers no way to refuse the truncation (seals exist only for memfd)
//!   and shmcast installs no `SIGBUS` handler. Demonstrated below in a child process.
//!   Anonymous (memfd) segments are sealed against resizing: use them when peers are not
//!   trusted that far.
//! - **A peer with write access can write anything in the mapping**: other consumers'
//!   slots (marking one free makes the producer overwrite that consumer's unread
//!   messages), the data ring (other consumers then report `Corrupt` or wait for a record
//!   that never comes), the layout line (later opens fail validation). Consumers validate
//!   every record header they read, so none of this is memory-unsafe for them, and the
//!   producer never trusts a consumer cursor: the producer and the consumers that keep to
//!   their own data stay memory-safe, but a hostile peer can deny service to the other
//!   consumers. The tests below check what the issue asks for: a consumer scribbling over
//!   its own slot or over the header fields cannot make the producer write out of bounds
//!   or hang, and the other consumers keep receiving intact data.
//! - **Root opens anything**: the owner check refuses segments of another user, but root
//!   bypasses the permission bits, and so does a peer running as the same user.
//! - **Takeover has no opt-in for foreign segments**: `ProducerBuilder::open` always
//!   refuses a segment owned by another user.

#[macro_use]
mod common;

use common::harness::Outcome;

use common::{
    await_parent_line, offsets, param, receive_until_disconnected, report, ChildProcess, ChildSpec,
    Rng, RunCheck, SegmentRef, SegmentView, ShmName, TempPath, WorkloadSender,
};
use shmcast::{Consumer, CreateError, OpenError, Producer, StartAt, TryRecvError, WaitPolicy};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The test that children run.
const ENTRY: &str = "child_process";

const CAPACITY: usize = 16 << 10;
const MAX_MESSAGE: usize = 1000;
const MAX_CONSUMERS: u32 = 8;

/// How long a scribbler scribbles while the producer streams.
const SCRIBBLE_FOR: Duration = Duration::from_millis(300);

/// Messages sent after the scribbling stopped: enough for many laps of the ring, so the
/// producer meets whatever the scribbler left behind.
const AFTER_SCRIBBLING: u64 = 20_000;

/// A user that owns nothing here.
const NOBODY: u32 = 65534;

/// The multi-process tests spin: one at a time on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const FUTEX: WaitPolicy = WaitPolicy::Adaptive {
    spins: 0,
    yields: 0,
};
const SPIN: WaitPolicy = WaitPolicy::SpinYield { spins: 256 };

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn os_error(e: &OpenError) -> Option<i32> {
    match e {
        OpenError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Child side.

/// Entry point of every child process (the test binary re-run in a role).
fn child_process(spec: &ChildSpec) {
    match spec.role.as_str() {
        "survivor" => survivor(spec),
        "scribbler" => scribbler(spec),
        "open_as_nobody" => open_as_nobody(spec),
        "touch_after_truncation" => touch_after_truncation(spec),
        other => panic!("unknown child role {other:?}"),
    }
}

fn survivor(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    let mut run = RunCheck::from(spec.max_message, 0);
    if let Err(e) = receive_until_disconnected(&mut consumer, &mut run) {
        panic!("{e}");
    }
    report("done", run.next().expect("a start"));
}

/// A consumer that, once the parent says "go", scribbles for `SCRIBBLE_FOR` over
/// `target`: `own_slot` (its cursor and state), `hwm` (the slot high-water mark, set to 0),
/// `state` (the producer state, set to closed), or `header` (everything else in the header
/// a peer can write: the layout line, the producer line, the futex words and sleeper
/// counts, the high-water mark set high, the producer state set to "none" or garbage).
/// Then it tries to receive and reports what happened, and leaves.
fn scribbler(spec: &ChildSpec) {
    let SegmentRef::Name(name) = &spec.segment else {
        panic!("named segments only");
    };
    let target: String = param("target");
    let mut consumer = spec.open();
    let view = SegmentView::named(name);
    let me = std::process::id();
    let slot = view.slot_of(me, MAX_CONSUMERS).expect("our own slot");
    report("attached", me);
    assert_eq!(await_parent_line(), "go");
    let mut rng = Rng::new(u64::from(me));
    let cap = view.load_u64(offsets::CAPACITY);
    let start = Instant::now();
    let mut writes = 0u64;
    let mut reading = true;
    while start.elapsed() < SCRIBBLE_FOR {
        // Keep reading between scribbles (until evicted), so as not to gate the producer
        // by reading nothing: the scribbles then land on a live, flowing stream.
        for _ in 0..64 {
            if !reading {
                break;
            }
            match consumer.try_recv() {
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                // Evicted (or anything else its scribbles caused): stop reading.
                Err(_) => reading = false,
            }
        }
        let r = rng.next_u64();
        let tail = view.load_u64(offsets::TAIL);
        match target.as_str() {
            "own_slot" => {
                let state = view.load_u32(offsets::slot(slot, offsets::SLOT_STATE));
                if r % 2 == 0 {
                    let cursor = [
                        u64::MAX,
                        0,
                        1,
                        tail + 8,
                        tail | 1,
                        tail.wrapping_add(2 * cap),
                        tail.saturating_sub(cap + 8) & !7,
                        tail.saturating_sub(cap / 2) & !7,
                        1 << 62,
                        1 << 63,
                        r,
                    ][(r >> 8) as usize % 11];
                    view.store_u64(offsets::slot(slot, offsets::SLOT_CURSOR), cursor);
                } else {
                    let value = [
                        0,
                        2,
                        3,
                        4,
                        u32::MAX,
                        (state & !0xff) | 3,
                        (state & !0xff) | 0x7f,
                        state.wrapping_add(0x100),
                        r as u32,
                    ][(r >> 8) as usize % 9];
                    view.store_u32(offsets::slot(slot, offsets::SLOT_STATE), value);
                }
            }
            "hwm" => view.store_u32(offsets::HWM, 0),
            "state" => view.store_u32(offsets::STATE, 2),
            "header" => {
                let r32 = (r >> 16) as u32;
                match (r >> 8) % 12 {
                    // The layout line: every 8-byte word.
                    0 => view.store_u64(8 * (r % 8), r),
                    1 => view.store_u64(offsets::TAIL, [0, u64::MAX, r][r as usize % 3]),
                    2 => view.store_u64(offsets::CLAIM, [0, u64::MAX, r][r as usize % 3]),
                    3 => view.store_u64(offsets::HEAD, [0, u64::MAX, r][r as usize % 3]),
                    4 => view.store_u64(offsets::NEXT_SEQ, r),
                    5 => view.store_u32(offsets::DATA_WORD, r32),
                    6 => view.store_u32(offsets::DATA_SLEEPERS, [0, u32::MAX, r32][r as usize % 3]),
                    7 => view.store_u32(offsets::SPACE_WORD, r32),
                    8 => {
                        view.store_u32(offsets::SPACE_SLEEPERS, [0, u32::MAX, r32][r as usize % 3])
                    }
                    9 => view.store_u32(
                        offsets::HWM,
                        [MAX_CONSUMERS, u32::MAX, r32 | 8][r as usize % 3],
                    ),
                    10 => view.store_u32(offsets::STATE, [0, 1, 7, r32 | 4][r as usize % 4]),
                    _ => view.store_u32(offsets::STATE + 4, r32),
                }
            }
            other => panic!("unknown target {other:?}"),
        }
        writes += 1;
    }
    report("scribbled", writes);
    // What became of the scribbler itself (not judged: at worst it is evicted).
    let outcome = match consumer.try_recv() {
        Ok(msg) => format!("received message {}", msg.seq()),
        Err(e) => format!("{e:?}"),
    };
    report("outcome", outcome);
}

/// Become user `NOBODY` (effective uid only: the real uid stays root), then open the
/// segment, with `allow_foreign_owner` as asked, and report what happened.
fn open_as_nobody(spec: &ChildSpec) {
    let allow: bool = param("allow");
    // SAFETY: plain syscall; this process runs this role only.
    assert_eq!(unsafe { libc::seteuid(NOBODY) }, 0, "seteuid");
    // SAFETY: as above.
    assert_eq!(unsafe { (libc::getuid(), libc::geteuid()) }, (0, NOBODY));
    let opened = spec.segment.open(
        Consumer::builder()
            .allow_foreign_owner(allow)
            .start_at(StartAt::Oldest),
    );
    let result = match opened {
        Ok(mut consumer) => match consumer.try_recv() {
            Ok(msg) => format!("received {}", msg.len()),
            Err(e) => format!("opened but {e:?}"),
        },
        Err(OpenError::ForeignOwner { owner, uid }) => format!("foreign {owner} {uid}"),
        Err(e) => match os_error(&e) {
            Some(code) => format!("os {code}"),
            None => format!("other {e}"),
        },
    };
    report("result", result);
}

/// Create a named segment with a consumer, send a message, and once the parent has
/// truncated the segment file, receive it: touching the truncated mapping raises `SIGBUS`.
fn touch_after_truncation(spec: &ChildSpec) {
    let SegmentRef::Name(name) = &spec.segment else {
        panic!("named segments only");
    };
    let mut producer = Producer::builder()
        .capacity(CAPACITY)
        .create(name)
        .expect("create");
    let mut consumer = Consumer::builder().open(name).expect("open");
    producer.send(b"before").expect("send");
    report("ready", std::process::id());
    assert_eq!(await_parent_line(), "go");
    let received = consumer.recv().map(|msg| msg.len());
    // Not reached if the mapping faults.
    report("survived", format!("{received:?}"));
}

// ---------------------------------------------------------------------------------------
// Permissions and ownership.

fn named_and_path_segments_are_created_with_mode_0600_by_default() {
    let name = ShmName::new("mode");
    let _named = Producer::builder()
        .capacity(4096)
        .create(name.as_str())
        .expect("create named");
    assert_eq!(mode_of(&name.dev_shm_path()), 0o600);
    let path = TempPath::new("mode");
    let _file = Producer::builder()
        .capacity(4096)
        .create_path(path.path())
        .expect("create path");
    assert_eq!(mode_of(path.path()), 0o600);
}

fn another_user_cannot_open_a_segment_created_with_default_permissions() -> Outcome {
    if !is_root() {
        return Outcome::Skipped("only root can become another user to try".into());
    }
    let _serial = serial();
    let name = ShmName::new("other-user");
    let _producer = Producer::builder()
        .capacity(4096)
        .create(name.as_str())
        .expect("create");
    let spec = ChildSpec {
        role: "open_as_nobody".into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: 0,
        wait: WaitPolicy::default(),
    };
    for allow in [false, true] {
        let mut child = ChildProcess::command("nobody", ENTRY, &spec)
            .param("allow", allow)
            .spawn();
        // Refused by the kernel (mode 0600), before any owner check.
        assert_eq!(child.expect("result"), format!("os {}", libc::EACCES));
        child.finish();
    }
    Outcome::Passed
}

/// The owner check compares with the *effective* uid: a process whose real uid owns the
/// segment but whose effective uid does not is refused, unless it opts in.
fn a_segment_owned_by_another_user_than_the_effective_one_is_refused_unless_allowed() -> Outcome {
    if !is_root() {
        return Outcome::Skipped("only root can change its effective uid to try".into());
    }
    let _serial = serial();
    let name = ShmName::new("euid");
    let mut producer = Producer::builder()
        .capacity(4096)
        .mode(0o666)
        .create(name.as_str())
        .expect("create");
    producer.send(b"shared on purpose").expect("send");
    let spec = ChildSpec {
        role: "open_as_nobody".into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: 0,
        wait: WaitPolicy::default(),
    };
    let run = |allow: bool| {
        let mut child = ChildProcess::command("nobody", ENTRY, &spec)
            .param("allow", allow)
            .spawn();
        let result = child.expect("result");
        child.finish();
        result
    };
    assert_eq!(run(false), format!("foreign 0 {NOBODY}"));
    assert_eq!(
        run(true),
        format!("received {}", b"shared on purpose".len())
    );
    Outcome::Passed
}

/// As root, a segment chowned to another user is refused by consumers unless they opt in,
/// and by a producer taking it over (which has no opt-in).
fn a_segment_chowned_to_another_user_is_refused_unless_allowed() -> Outcome {
    if !is_root() {
        return Outcome::Skipped("only root can chown a segment to another user".into());
    }
    let name = ShmName::new("chowned");
    let path = TempPath::new("chowned");
    let mut named = Producer::builder()
        .capacity(4096)
        .remove_on_drop(false)
        .create(name.as_str())
        .expect("create named");
    let mut file = Producer::builder()
        .capacity(4096)
        .create_path(path.path())
        .expect("create path");
    chown(&name.dev_shm_path(), NOBODY);
    chown(path.path(), NOBODY);

    let refused = |r: Result<Consumer, OpenError>| match r {
        Err(OpenError::ForeignOwner { owner, uid }) => assert_eq!((owner, uid), (NOBODY, 0)),
        other => panic!("expected ForeignOwner, got {other:?}"),
    };
    refused(Consumer::builder().open(name.as_str()));
    refused(Consumer::builder().open_path(path.path()));
    assert!(matches!(
        Consumer::builder().lossy().open(name.as_str()),
        Err(OpenError::ForeignOwner { .. })
    ));

    let mut allowed = Consumer::builder()
        .allow_foreign_owner(true)
        .open(name.as_str())
        .expect("allowed explicitly");
    named.send(b"named").expect("send");
    assert_eq!(&*allowed.recv().expect("recv"), b"named");
    let mut allowed = Consumer::builder()
        .allow_foreign_owner(true)
        .open_path(path.path())
        .expect("allowed explicitly");
    file.send(b"path").expect("send");
    assert_eq!(&*allowed.recv().expect("recv"), b"path");

    drop(named);
    match Producer::builder().open(name.as_str()) {
        Err(OpenError::ForeignOwner { owner, uid }) => assert_eq!((owner, uid), (NOBODY, 0)),
        other => panic!("a takeover of a foreign segment: expected ForeignOwner, got {other:?}"),
    }
    Outcome::Passed
}

// ---------------------------------------------------------------------------------------
// O_EXCL and O_NOFOLLOW.

/// The whole file and its identity, to show that something did not touch it.
fn fingerprint(path: &Path) -> (Vec<u8>, u64, u32, u32, u64) {
    let meta = std::fs::symlink_metadata(path).expect("stat");
    (
        std::fs::read(path).expect("read"),
        meta.ino(),
        meta.mode(),
        meta.uid(),
        meta.len(),
    )
}

fn creating_a_named_segment_that_exists_leaves_its_bytes_and_metadata_untouched() {
    let name = ShmName::new("excl-bytes");
    let mut producer = Producer::builder()
        .capacity(4096)
        .create(name.as_str())
        .expect("create");
    let mut consumer = Consumer::builder().open(name.as_str()).expect("open");
    producer.send(b"before").expect("send");
    let before = fingerprint(&name.dev_shm_path());
    for capacity in [4096, 1 << 16] {
        assert!(matches!(
            Producer::builder().capacity(capacity).create(name.as_str()),
            Err(CreateError::AlreadyExists(_))
        ));
    }
    assert_eq!(fingerprint(&name.dev_shm_path()), before);
    assert_eq!(&*consumer.recv().expect("recv"), b"before");
}

/// `O_CREAT | O_EXCL` does not follow a symlink, dangling or not: creating at a symlink is
/// refused and nothing is created or changed at its target (the classic attack of a
/// planted link in a shared directory).
fn creating_a_segment_at_a_symlink_is_refused_and_touches_nothing_at_its_target() {
    // A dangling link, by path and in /dev/shm.
    let target = TempPath::new("planted-target");
    let link = TempPath::new("planted-link");
    std::os::unix::fs::symlink(target.path(), link.path()).expect("symlink");
    assert!(matches!(
        Producer::builder().capacity(4096).create_path(link.path()),
        Err(CreateError::AlreadyExists(_))
    ));
    assert!(!target.path().exists(), "the link's target was created");

    let name = ShmName::new("planted-link");
    std::os::unix::fs::symlink(target.path(), name.dev_shm_path()).expect("symlink");
    assert!(matches!(
        Producer::builder().capacity(4096).create(name.as_str()),
        Err(CreateError::AlreadyExists(_))
    ));
    assert!(!target.path().exists(), "the link's target was created");

    // A link to a live segment: refused, the segment untouched.
    let real = TempPath::new("planted-real");
    let _producer = Producer::builder()
        .capacity(4096)
        .create_path(real.path())
        .expect("create");
    let before = fingerprint(real.path());
    let link = TempPath::new("planted-link-to-real");
    std::os::unix::fs::symlink(real.path(), link.path()).expect("symlink");
    assert!(matches!(
        Producer::builder()
            .capacity(1 << 16)
            .create_path(link.path()),
        Err(CreateError::AlreadyExists(_))
    ));
    assert_eq!(fingerprint(real.path()), before);
}

/// A symlink where a segment is expected is not followed: opening it by path, by name, or
/// taking it over is refused with `ELOOP`, even though the link points to a valid segment.
fn opening_a_segment_through_a_symlink_is_refused() {
    let real = TempPath::new("nofollow-real");
    let _producer = Producer::builder()
        .capacity(4096)
        .remove_on_drop(false)
        .create_path(real.path())
        .expect("create");
    // The target itself opens.
    Consumer::builder()
        .open_path(real.path())
        .expect("the real segment opens");

    let link = TempPath::new("nofollow-link");
    std::os::unix::fs::symlink(real.path(), link.path()).expect("symlink");
    let e = Consumer::builder().open_path(link.path()).unwrap_err();
    assert_eq!(os_error(&e), Some(libc::ELOOP), "{e}");

    let name = ShmName::new("nofollow-link");
    std::os::unix::fs::symlink(real.path(), name.dev_shm_path()).expect("symlink");
    let e = Consumer::builder().open(name.as_str()).unwrap_err();
    assert_eq!(os_error(&e), Some(libc::ELOOP), "{e}");
    let e = Consumer::builder().lossy().open(name.as_str()).unwrap_err();
    assert_eq!(os_error(&e), Some(libc::ELOOP), "{e}");
    let e = Producer::builder().open(name.as_str()).unwrap_err();
    assert_eq!(os_error(&e), Some(libc::ELOOP), "{e}");
}

// ---------------------------------------------------------------------------------------
// A hostile consumer scribbling from another process.

/// The producer (this process) streams to two surviving consumer processes (one asleep on
/// the futex when idle, one spinning) while a third consumer process scribbles over
/// `target` for `SCRIBBLE_FOR`; then it sends `AFTER_SCRIBBLING` more and closes. The
/// producer must never be stuck (every send is bounded by the hang guard) nor write outside
/// the ring (the bytes between the slot table and the data ring stay zero, and its own
/// process would fault); the survivors must receive the whole stream, intact. What became
/// of the scribbler itself is printed, not judged.
fn scribbled(test: &str, target: &str) {
    let _serial = serial();
    let name = ShmName::new(test);
    let producer = Producer::builder()
        .capacity(CAPACITY)
        .max_message(MAX_MESSAGE)
        .max_consumers(MAX_CONSUMERS)
        .create(name.as_str())
        .expect("create");
    let mut stream = WorkloadSender::new(producer, 0);
    let spec = |role: &str, wait| ChildSpec {
        role: role.into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: MAX_MESSAGE,
        wait,
    };
    let survivors: Vec<ChildProcess> = [("survivor asleep", FUTEX), ("survivor spinning", SPIN)]
        .iter()
        .map(|(label, wait)| {
            let mut c = ChildProcess::spawn(label, ENTRY, &spec("survivor", *wait));
            c.expect("attached");
            c
        })
        .collect();
    let mut scribbler = ChildProcess::command("scribbler", ENTRY, &spec("scribbler", SPIN))
        .param("target", target)
        .spawn();
    scribbler.expect("attached");
    stream.send(100);
    scribbler.send_line("go");
    let watcher = thread::spawn(move || {
        scribbler.expect("scribbled");
        let outcome = scribbler.expect("outcome");
        scribbler.finish();
        outcome
    });
    while !watcher.is_finished() {
        stream.send_next();
    }
    let outcome = watcher.join().expect("watcher thread");
    stream.send(AFTER_SCRIBBLING);

    // Nothing outside the header, the slot table and the ring was written. (The view maps
    // the file as it is now: were it resized, this would show.)
    let view = SegmentView::named(name.as_str());
    let slots_end = offsets::SLOTS + u64::from(MAX_CONSUMERS) * offsets::SLOT_SIZE;
    // The data ring starts at the first page boundary after the slot table.
    let data_offset = 4096;
    assert_eq!(view.len(), data_offset + CAPACITY as u64);
    for at in (slots_end..data_offset).step_by(8) {
        assert_eq!(view.load_u64(at), 0, "the producer wrote at offset {at}");
    }

    let (stats, sent, _) = stream.close();
    for mut c in survivors {
        let done: u64 = c.expect("done").parse().expect("next");
        c.finish();
        assert_eq!(
            done, sent,
            "a consumer that kept to itself received {done} of the {sent} messages"
        );
    }
    println!(
        "{test}: {sent} messages, {} evictions; the scribbler: {outcome}",
        stats.evictions
    );
}

fn a_consumer_scribbling_over_its_own_slot_at_worst_gets_itself_evicted() {
    scribbled("scribble-own-slot", "own_slot");
}

fn a_consumer_scribbling_over_the_header_disturbs_neither_the_producer_nor_the_others() {
    scribbled("scribble-header", "header");
}

/// Zeroing the slot high-water mark must not hide the other consumers from the producer
/// (which would then overwrite their unread messages).
fn a_consumer_zeroing_the_slot_high_water_mark_cannot_hide_the_others_from_the_producer() {
    scribbled("scribble-hwm", "hwm");
}

/// Marking the stream closed in the header while the producer is alive must not end the
/// stream for the other consumers.
fn a_consumer_marking_the_stream_closed_cannot_end_it_for_the_others() {
    scribbled("scribble-state", "state");
}

// ---------------------------------------------------------------------------------------
// Resizing.

fn a_memfd_segment_cannot_be_resized_or_unsealed_by_anyone_holding_it() {
    let mut producer = Producer::builder()
        .capacity(4096)
        .create_anonymous()
        .expect("create");
    let mut consumer = Consumer::builder()
        .open_fd(producer.fd().expect("memfd"))
        .expect("open");
    let fd = producer.fd().expect("memfd").as_raw_fd();
    // A new open file description of the same memfd, as a peer that was handed the
    // descriptor (or reopened it through /proc) would have: seals belong to the file.
    let peer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .expect("reopen");
    let size = peer.metadata().expect("fstat").len();
    for f in [fd, peer.as_raw_fd()] {
        for len in [0, size / 2, size - 1, size + 4096] {
            // SAFETY: plain syscall on an open descriptor.
            let r = unsafe { libc::ftruncate(f, len as libc::off_t) };
            let e = std::io::Error::last_os_error();
            assert_eq!(
                (r, e.raw_os_error()),
                (-1, Some(libc::EPERM)),
                "ftruncate to {len}"
            );
        }
        // SAFETY: as above.
        let seals = unsafe { libc::fcntl(f, libc::F_GET_SEALS) };
        let expected = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        assert_eq!(seals & expected, expected, "seals {seals:#x}");
        // No more seals (e.g. a write seal that would freeze the ring) can be added.
        // SAFETY: as above.
        let r = unsafe { libc::fcntl(f, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) };
        assert_eq!(r, -1);
    }
    assert_eq!(peer.metadata().expect("fstat").len(), size);
    producer.send(b"still whole").expect("send");
    assert_eq!(&*consumer.recv().expect("recv"), b"still whole");
    assert_eq!(consumer.try_recv().unwrap_err(), TryRecvError::Empty);
}

/// What remains (see the module docs): a named segment truncated by a peer turns every
/// mapping of it into `SIGBUS` at the first touch past the new end. Shown in a child
/// process, which dies of it.
fn a_named_segment_truncated_by_a_peer_kills_a_process_that_touches_it_with_sigbus() {
    let _serial = serial();
    let name = ShmName::new("truncated");
    let spec = ChildSpec {
        role: "touch_after_truncation".into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: 0,
        wait: WaitPolicy::default(),
    };
    let mut child = ChildProcess::spawn("victim", ENTRY, &spec);
    child.expect("ready");
    // The peer: any process that can open the file for writing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(name.dev_shm_path())
        .expect("open")
        .set_len(0)
        .expect("truncate");
    child.send_line("go");
    let status = child.exit_status();
    if status.signal() != Some(libc::SIGBUS) {
        child.fail(&format!("expected to die of SIGBUS, got {status}"));
    }
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[
        case!(named_and_path_segments_are_created_with_mode_0600_by_default),
        skippable!(another_user_cannot_open_a_segment_created_with_default_permissions),
        skippable!(a_segment_owned_by_another_user_than_the_effective_one_is_refused_unless_allowed),
        skippable!(a_segment_chowned_to_another_user_is_refused_unless_allowed),
        case!(creating_a_named_segment_that_exists_leaves_its_bytes_and_metadata_untouched),
        case!(creating_a_segment_at_a_symlink_is_refused_and_touches_nothing_at_its_target),
        case!(opening_a_segment_through_a_symlink_is_refused),
        case!(a_consumer_scribbling_over_its_own_slot_at_worst_gets_itself_evicted),
        case!(a_consumer_scribbling_over_the_header_disturbs_neither_the_producer_nor_the_others),
        case!(a_consumer_zeroing_the_slot_high_water_mark_cannot_hide_the_others_from_the_producer),
        case!(a_consumer_marking_the_stream_closed_cannot_end_it_for_the_others),
        case!(a_memfd_segment_cannot_be_resized_or_unsealed_by_anyone_holding_it),
        case!(a_named_segment_truncated_by_a_peer_kills_a_process_that_touches_it_with_sigbus),
        ],
    );
}
