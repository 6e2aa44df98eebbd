//! How a segment sits in memory: pages faulted in at creation and attach (no page fault in
//! the first lap), locked on request, and huge pages on hugetlbfs.

#[macro_use]
mod common;

use common::harness::Outcome;
use shmcast::{Consumer, Producer};
use std::path::{Path, PathBuf};

/// Does this `/proc/self/smaps` line start a mapping ("start-end perms offset ...")?
fn is_header(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|range| {
        range.split_once('-').is_some_and(|(a, b)| {
            u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok()
        })
    })
}

/// The resident and total size (KiB) of this process's mappings of `file`, from
/// `/proc/self/smaps`.
fn resident(file: &Path) -> Vec<(u64, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let target = file.to_str().unwrap();
    let mut out = Vec::new();
    let mut lines = smaps.lines().peekable();
    while let Some(line) = lines.next() {
        // A mapping's header: "start-end perms offset dev inode path".
        let is_ours = line.split_whitespace().nth(5) == Some(target)
            || line.ends_with(&format!("{target} (deleted)"));
        if !is_ours {
            continue;
        }
        let (mut size, mut rss) = (None, None);
        while let Some(next) = lines.peek() {
            if is_header(next) {
                break;
            }
            let next = lines.next().unwrap();
            let kib = || {
                next.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if next.starts_with("Size:") {
                size = kib();
            } else if next.starts_with("Rss:") {
                rss = kib();
            }
        }
        out.push((rss.expect("Rss"), size.expect("Size")));
    }
    out
}

/// Producer and consumer mappings are fully resident right after creating and attaching
/// (`prefault`, the default): the first lap takes no page fault. Without it, a fresh
/// segment's pages are not there yet.
fn segments_are_faulted_in_when_created_and_attached() {
    let name = format!("shmcast-test-{}-prefault", std::process::id());
    let _ = shmcast::force_remove(&name);
    let path = PathBuf::from("/dev/shm").join(&name);
    let producer = Producer::builder().capacity(1 << 20).create(&name).unwrap();
    let consumer = Consumer::builder().open(&name).unwrap();
    let maps = resident(&path);
    assert_eq!(maps.len(), 2, "{maps:?}");
    for (rss, size) in maps {
        assert_eq!(rss, size, "a mapping is not fully resident");
    }
    drop((consumer, producer));

    let producer = Producer::builder()
        .capacity(1 << 20)
        .prefault(false)
        .create(&name)
        .unwrap();
    let maps = resident(&path);
    assert_eq!(maps.len(), 1, "{maps:?}");
    let (rss, size) = maps[0];
    assert!(
        rss < size / 2,
        "not prefaulted, yet {rss} of {size} KiB resident"
    );
    drop(producer);
}

/// `lock_memory` locks the mapping (its pages count as locked), or fails with a clear error
/// where the memlock limit is too low; it never aborts.
fn memory_is_locked_on_request_or_refused_clearly() {
    let name = format!("shmcast-test-{}-mlock", std::process::id());
    let _ = shmcast::force_remove(&name);
    match Producer::builder()
        .capacity(1 << 16)
        .lock_memory(true)
        .create(&name)
    {
        Ok(p) => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let locked: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .expect("VmLck");
            assert!(locked >= 64, "VmLck {locked} KiB");
            drop(p);
        }
        Err(shmcast::CreateError::Io { context, .. }) => {
            assert!(context.contains("RLIMIT_MEMLOCK"), "{context}");
            eprintln!("mlock refused here ({context}): checked the error instead");
        }
        Err(e) => panic!("{e}"),
    }
}

/// A hugetlbfs mount with at least `pages` free huge pages, if this machine has one.
fn hugetlbfs(pages: u64) -> Option<PathBuf> {
    let free: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))?
        .trim()
        .parse()
        .ok()?;
    if free < pages {
        return None;
    }
    std::fs::read_to_string("/proc/mounts")
        .ok()?
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        .and_then(|l| l.split_whitespace().nth(1).map(PathBuf::from))
}

/// A segment on hugetlbfs is sized up to whole huge pages and works like any other. Where
/// no hugetlbfs mount with free huge pages exists, the test says it was skipped (to run it:
/// `mount -t hugetlbfs none /mnt/huge; echo 8 > /proc/sys/vm/nr_hugepages`; `.ci/run` sets
/// that up where it may).
fn a_segment_on_hugetlbfs_uses_whole_huge_pages() -> Outcome {
    let Some(dir) = hugetlbfs(2) else {
        return Outcome::Skipped("no hugetlbfs mount with 2 free huge pages".into());
    };
    let path = dir.join(format!("shmcast-test-{}-huge", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut p = Producer::builder()
        .capacity(1 << 20)
        .create_path(&path)
        .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size % (2 << 20), 0, "{size} bytes: not whole huge pages");
    assert!(size >= (1 << 20) + 4096);
    let mut c = Consumer::builder().open_path(&path).unwrap();
    for i in 0..10_000u32 {
        p.send(&i.to_le_bytes()).unwrap();
        assert_eq!(&*c.recv().unwrap(), &i.to_le_bytes());
    }
    let snapshot = shmcast::inspect_path(&path).unwrap();
    assert_eq!(snapshot.producer.next_seq, 10_000);
    drop(c);
    drop(p);
    assert!(!path.exists());
    Outcome::Passed
}

fn main() {
    common::harness::main(
        None,
        &[
            case!(segments_are_faulted_in_when_created_and_attached),
            case!(memory_is_locked_on_request_or_refused_clearly),
            skippable!(a_segment_on_hugetlbfs_uses_whole_huge_pages),
        ],
    );
}
