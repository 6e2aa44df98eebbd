//! The async report end to end with tiny counts: every consumer (async in both tokio
//! runtimes, blocking, tokio UnixStream) in every figure, as real processes. Checks that
//! every row is a figure rather than an error and that nothing is left in /dev/shm. No
//! timing is asserted.

use std::process::Command;

fn shm_entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("shmcast-bench-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn async_report_runs_every_consumer_in_every_figure_and_cleans_up() {
    let before = shm_entries();
    let out = Command::new(env!("CARGO_BIN_EXE_async_report"))
        .args(["--smoke", "--no-pin", "--strace", "off", "--format", "json"])
        .output()
        .expect("run async_report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "async_report failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for v in [
        "shmcast-async-mt",
        "shmcast-async-ct",
        "shmcast-blocking-adaptive",
        "shmcast-blocking-sleep",
        "tokio-unix-mt",
        "tokio-unix-ct",
    ] {
        // One row in the wake-up table, one in the idle table, one per pace (flowing and
        // two paced rates) in the syscall table.
        let rows = stdout.matches(&format!("\"consumer\":\"{v}\"")).count();
        assert_eq!(rows, 5, "{v}: {rows} rows in\n{stdout}");
    }
    // A failed measurement makes the report exit non-zero (checked above); a figure that
    // ran has numbers.
    assert!(stdout.contains("\"p50_ns\":"), "{stdout}");
    assert!(stdout.contains("\"cpu_ns\":"), "{stdout}");
    assert_eq!(shm_entries(), before, "segments left in /dev/shm");
}
