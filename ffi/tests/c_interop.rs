//! The C interface from C: builds `examples/producer.c`, `examples/consumer.c` (linked to
//! the shared library) and `tests/c/errors.c` (linked to the static library) with `cc`,
//! then runs them against each other and against the Rust peer (`shmcast-ffi-peer`, the
//! same workload written against the `shmcast` crate), each in its own process. Every
//! message is checked (index, length, filler, checksum) and whole runs are compared by
//! digest.
//!
//! `CC` picks the compiler (default `cc`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

/// How long any wait on another process may take: a hang guard, never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Messages per run: enough to lap a 64 KiB ring many times.
const COUNT: u64 = 20_000;
const MAX_LEN: usize = 300;

// ---------------------------------------------------------------------------------------
// Building the C programs.

struct Programs {
    producer: PathBuf,
    consumer: PathBuf,
    errors: PathBuf,
}

/// The directory holding `libshmcast_ffi.{so,a}`: `cargo test` leaves them in `deps/`
/// beside the test binary (`cargo build` copies them one level up).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let deps = exe
        .parent()
        .expect("test binary in <target>/<profile>/deps");
    let candidates = [
        deps.to_path_buf(),
        deps.parent().unwrap_or(deps).to_path_buf(),
    ];
    candidates
        .iter()
        .find(|d| d.join("libshmcast_ffi.so").exists() && d.join("libshmcast_ffi.a").exists())
        .unwrap_or_else(|| {
            panic!("libshmcast_ffi.so/.a not found in {candidates:?}; cargo builds them with the tests")
        })
        .clone()
}

fn cc(args: &[&str], out: &Path) {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let output = Command::new(&compiler)
        .args([
            "-std=c11",
            "-O2",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler '{compiler}': {e}"));
    assert!(
        output.status.success(),
        "{compiler} failed building {}:\n{}",
        out.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn programs() -> &'static Programs {
    static BUILT: OnceLock<Programs> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"));
        let lib = lib_dir();
        let out = lib.join("shmcast-ffi-c");
        std::fs::create_dir_all(&out).expect("create the C build directory");
        let include = format!("-I{}", src.join("include").display());
        let examples = format!("-I{}", src.join("examples").display());
        let lib_s = lib.display().to_string();
        // DT_RPATH, not the default DT_RUNPATH: `cargo test` puts `target/<profile>` on
        // LD_LIBRARY_PATH, which outranks a RUNPATH, and a `libshmcast_ffi.so` that an
        // earlier `cargo build` left there (another version of the library) would be loaded
        // instead of the one built with these tests.
        let rpath = format!("-Wl,--disable-new-dtags,-rpath,{lib_s}");
        let dynamic = |name: &str| {
            let exe = out.join(name);
            let file = src.join(format!("examples/{name}.c"));
            cc(
                &[
                    &include,
                    &examples,
                    file.to_str().expect("utf-8 path"),
                    "-L",
                    &lib_s,
                    "-lshmcast_ffi",
                    &rpath,
                ],
                &exe,
            );
            exe
        };
        let producer = dynamic("producer");
        let consumer = dynamic("consumer");
        // The error test links the static library (and what it needs from libc).
        let errors = out.join("errors");
        let file = src.join("tests/c/errors.c");
        let archive = lib.join("libshmcast_ffi.a");
        cc(
            &[
                &include,
                "-pthread",
                file.to_str().expect("utf-8 path"),
                archive.to_str().expect("utf-8 path"),
                "-lgcc_s",
                "-lutil",
                "-lrt",
                "-lpthread",
                "-lm",
                "-ldl",
                "-lc",
            ],
            &errors,
        );
        Programs {
            producer,
            consumer,
            errors,
        }
    })
}

fn rust_peer() -> &'static str {
    env!("CARGO_BIN_EXE_shmcast-ffi-peer")
}

// ---------------------------------------------------------------------------------------
// Segments and processes that clean up after themselves.

/// A segment name unique to this process and test; removed on drop (also on failure).
struct ShmName(String);

impl ShmName {
    fn new(test: &str) -> ShmName {
        let name = format!("shmcast-ffi-{}-{test}", std::process::id());
        let _ = shmcast::force_remove(&name);
        ShmName(name)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmcast::force_remove(&self.0);
    }
}

/// A peer process (C or Rust) and the lines it prints; killed on drop if still running.
struct Peer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Peer {
    fn spawn(label: &str, program: &Path, args: &[&str]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label} ({}): {e}", program.display()));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            label: label.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// The next line starting with one of `prefixes`; fails on an `error` line, on exit
    /// without it, or after the hang guard.
    fn expect(&mut self, prefixes: &[&str]) -> String {
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) if prefixes.iter().any(|p| line.starts_with(p)) => return line,
                Ok(line) if line.starts_with("error") => {
                    panic!("{} reported: {line}", self.label)
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: no {prefixes:?} line within {HANG_GUARD:?}", self.label)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait");
                    panic!(
                        "{} exited ({status}) before printing {prefixes:?}",
                        self.label
                    )
                }
            }
        }
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go").expect("write the go line");
        stdin.flush().expect("flush");
    }

    /// The final line (`sent`, `ok` or `producer-died`), after which the process must exit
    /// successfully.
    fn finish(mut self, prefixes: &[&str]) -> Summary {
        let line = self.expect(prefixes);
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "{} failed: {status} after '{line}'",
            self.label
        );
        Summary::parse(&line)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The `key=value` fields of a final line.
#[derive(Debug)]
struct Summary {
    how: String,
    messages: u64,
    bytes: u64,
    lost: u64,
    digest: String,
}

impl Summary {
    fn parse(line: &str) -> Summary {
        let mut words = line.split_whitespace();
        let how = words.next().unwrap_or_default().to_string();
        let mut s = Summary {
            how,
            messages: 0,
            bytes: 0,
            lost: 0,
            digest: String::new(),
        };
        for w in words {
            let (k, v) = w.split_once('=').unwrap_or((w, ""));
            let num = || {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("bad field {w} in {line}"))
            };
            match k {
                "messages" => s.messages = num(),
                "bytes" => s.bytes = num(),
                "lost" => s.lost = num(),
                "digest" => s.digest = v.to_string(),
                _ => {}
            }
        }
        s
    }
}

/// A producer (C or Rust) of `COUNT` messages that waits for its consumers.
fn start_producer(program: &Path, label: &str, name: &str, extra: &[&str]) -> Peer {
    let count = COUNT.to_string();
    let max = MAX_LEN.to_string();
    let mut args = vec![];
    if program == Path::new(rust_peer()) {
        args.push("produce");
    }
    args.extend([name, &count, "--max-len", &max, "--wait-go"]);
    args.extend(extra);
    let mut p = Peer::spawn(label, program, &args);
    p.expect(&["ready"]);
    p
}

/// A consumer (C or Rust), attached.
fn start_consumer(program: &Path, label: &str, name: &str, extra: &[&str]) -> Peer {
    let max = MAX_LEN.to_string();
    let mut args = vec![];
    if program == Path::new(rust_peer()) {
        args.push("consume");
    }
    args.extend([name, "--max-len", &max]);
    args.extend(extra);
    let mut c = Peer::spawn(label, program, &args);
    c.expect(&["attached"]);
    c
}

/// Run a producer and consumers to the end; check every lossless consumer got exactly
/// what was sent and every lossy one got or counted every message.
fn exchange(producer: (&Path, &str), consumers: &[(&Path, &str, &[&str])], test: &str) {
    let name = ShmName::new(test);
    let mut p = start_producer(producer.0, producer.1, &name.0, &[]);
    let cs: Vec<(Peer, bool)> = consumers
        .iter()
        .map(|(prog, label, extra)| {
            (
                start_consumer(prog, label, &name.0, extra),
                extra.contains(&"--lossy"),
            )
        })
        .collect();
    p.go();
    let sent = p.finish(&["sent"]);
    assert_eq!(sent.messages, COUNT);
    for (c, lossy) in cs {
        let label = c.label.clone();
        let got = c.finish(&["ok", "producer-died"]);
        assert_eq!(got.how, "ok", "{label}: {got:?}");
        if lossy {
            assert_eq!(
                got.messages + got.lost,
                COUNT,
                "{label}: every message received or counted lost: {got:?}"
            );
        } else {
            assert_eq!(
                (got.messages, got.bytes, got.lost, &got.digest),
                (sent.messages, sent.bytes, 0, &sent.digest),
                "{label} received other messages than were sent"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn c_producer_to_c_consumers() {
    let pr = programs();
    exchange(
        (&pr.producer, "C producer"),
        &[
            (&pr.consumer, "C consumer", &[]),
            (&pr.consumer, "C consumer (oldest)", &["--oldest"]),
            (&pr.consumer, "C lossy consumer", &["--lossy"]),
        ],
        "c-c",
    );
}

#[test]
fn c_producer_to_rust_consumers() {
    let pr = programs();
    let rust = Path::new(rust_peer());
    exchange(
        (&pr.producer, "C producer"),
        &[
            (rust, "Rust consumer", &[]),
            (rust, "Rust lossy consumer", &["--lossy"]),
        ],
        "c-rust",
    );
}

#[test]
fn rust_producer_to_c_consumers() {
    let pr = programs();
    exchange(
        (Path::new(rust_peer()), "Rust producer"),
        &[
            (&pr.consumer, "C consumer", &[]),
            (&pr.consumer, "C lossy consumer", &["--lossy"]),
            (Path::new(rust_peer()), "Rust consumer", &[]),
        ],
        "rust-c",
    );
}

/// `shmcast_consumer_options.tight_spin`: busy-spinning consumers get every message, in
/// order, across the ring's many laps, both with the default (on: a spin polls the next
/// record's stamp alone) and with it set to 0 (every spin runs the full poll).
#[test]
fn c_producer_to_c_consumers_with_and_without_tight_spin() {
    let pr = programs();
    exchange(
        (&pr.producer, "C producer"),
        &[
            (
                &pr.consumer,
                "C consumer (busy-spin, tight spin by default)",
                &["--busy-spin"],
            ),
            (
                &pr.consumer,
                "C consumer (busy-spin, --no-tight-spin)",
                &["--busy-spin", "--no-tight-spin"],
            ),
        ],
        "c-tight",
    );
}

#[test]
fn c_and_rust_consumers_report_a_killed_c_producer() {
    let pr = programs();
    let name = ShmName::new("died");
    let mut p = start_producer(
        &pr.producer,
        "C producer",
        &name.0,
        &["--stall-after", "5000"],
    );
    let c = start_consumer(&pr.consumer, "C consumer", &name.0, &[]);
    let r = start_consumer(Path::new(rust_peer()), "Rust consumer", &name.0, &[]);
    p.go();
    p.expect(&["stalled 5000"]);
    p.kill(); // SIGKILL: no close, the name stays (ShmName removes it)
    for c in [c, r] {
        let label = c.label.clone();
        let got = c.finish(&["ok", "producer-died"]);
        assert_eq!(got.how, "producer-died", "{label}: {got:?}");
        assert_eq!(got.messages, 5000, "{label}: every committed message first");
    }
}

#[test]
fn c_error_paths() {
    let pr = programs();
    let prefix = format!("shmcast-ffi-{}-errors", std::process::id());
    let output = Command::new(&pr.errors)
        .arg(&prefix)
        .output()
        .expect("run the C error-path test");
    // Whatever happened, leave nothing behind in /dev/shm or /tmp.
    let _ = std::fs::remove_file(Path::new("/tmp").join(format!("{prefix}-path")));
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) {
                let _ = shmcast::force_remove(&n);
                panic!("the C error test left segment {n} behind");
            }
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "C error-path checks failed ({}):\n{stdout}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("errors: ") && last.ends_with(" 0 failed") && !last.contains(" 0 passed"),
        "unexpected summary: {last}"
    );
}
