//! The headline demo end to end: two real processes per transport, tiny counts. Checks
//! that every transport ran (a figure, not an error, in every row) and that nothing is
//! left in /dev/shm. No timing is asserted.

use std::process::Command;

fn shm_entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("shmcast-bench-") || n.contains("iox2"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn pingpong_runs_every_transport_and_cleans_up() {
    let before = shm_entries();
    let out = Command::new(env!("CARGO_BIN_EXE_pingpong"))
        .args([
            "--iterations",
            "200",
            "--warmup",
            "50",
            "--rounds",
            "2",
            "--budget-secs",
            "1",
            "--throughput-secs",
            "0.02",
            "--no-pin",
            "--json",
        ])
        .output()
        .expect("run pingpong");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pingpong failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [
        "\"floor\"",
        "\"floor-payload\"",
        "\"shmcast-spin\"",
        "\"shmcast-adaptive\"",
        "\"pipe\"",
        "\"stream-floor\"",
        "\"shmcast-spin batch 64\"",
    ] {
        assert!(stdout.contains(t), "{t} missing from {stdout}");
    }
    if cfg!(feature = "ringfire") {
        assert!(stdout.contains("\"ringfire\""), "{stdout}");
    }
    if cfg!(feature = "iceoryx2") {
        assert!(stdout.contains("\"iceoryx2\""), "{stdout}");
    }
    // Every round-trip row has a p50 (a failed transport would have null).
    assert!(!stdout.contains("\"p50_ns\":null"), "{stdout}");
    assert!(!stdout.contains("\"msgs_per_s\":null"), "{stdout}");
    let after = shm_entries();
    let left: Vec<_> = after.iter().filter(|n| !before.contains(n)).collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

#[test]
fn bad_arguments_are_reported_with_a_non_zero_exit() {
    let out = Command::new(env!("CARGO_BIN_EXE_pingpong"))
        .args(["--size", "3"])
        .output()
        .expect("run pingpong");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size must be 8 to 65536"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_pingpong"))
        .arg("--help")
        .output()
        .expect("run pingpong");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--iterations <N>"));
}
