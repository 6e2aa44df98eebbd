//! Writes the seed corpus of the `hostile_segment` target: valid segments in several states
//! (empty; messages published, wrapped around the ring and padded; consumers attached;
//! producer closed or still marked live), each followed by the parameter bytes the target
//! reads past the segment's end.
//!
//! ```text
//! cd fuzz && cargo run --example seeds            # writes seeds/hostile_segment/
//! ```

use shmcast::fuzzing::HostileSegment;
use shmcast::StartAt;
use shmcast_fuzz::payload;
use std::path::Path;

/// A segment of `cap` bytes after `sends` messages of the given lengths, with consumers
/// that received `received` of them; `close` drops the producer (stream closed).
fn segment(
    cap: usize,
    max_message: usize,
    max_consumers: u32,
    lens: &[usize],
    received: usize,
    close: bool,
) -> HostileSegment {
    let seg = HostileSegment::fresh(cap, max_message, max_consumers).expect("valid config");
    let mut p = seg.producer().expect("fresh segment has no producer");
    let mut oldest = seg.consumer(StartAt::Oldest).expect("a free slot");
    let mut next = seg.consumer(StartAt::Next).expect("a free slot");
    for (k, &len) in lens.iter().enumerate() {
        // Keep the ring from filling up: consume as we go, up to `received`.
        if p.try_send(&payload(k as u64, len, 1)).is_err() {
            while next.try_recv().is_ok() {}
            while oldest.try_recv().is_ok() {}
            p.try_send(&payload(k as u64, len, 1))
                .expect("room after draining");
        }
        if k < received {
            drop(next.try_recv());
        }
    }
    // Leak the consumers' registrations into the snapshot (their slots stay lossless).
    std::mem::forget(oldest);
    std::mem::forget(next);
    if close {
        drop(p);
    } else {
        std::mem::forget(p);
    }
    seg
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/hostile_segment");
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let ramp: Vec<usize> = (0..40).map(|i| (i * 7) % 41).collect();
    let big: Vec<usize> = (0..30).map(|i| [0, 1, 8, 9, 100, 230][i % 6]).collect();
    let seeds: Vec<(&str, HostileSegment, Vec<u8>)> = vec![
        (
            "empty-256",
            HostileSegment::fresh(256, 40, 1).expect("valid"),
            vec![],
        ),
        (
            "wrapped-256-closed",
            segment(256, 40, 2, &ramp, 30, true),
            vec![3, 0, 20, 255],
        ),
        (
            "wrapped-1k-live",
            segment(1024, 230, 4, &big, 12, false),
            vec![8, 1, 2, 3, 4, 250, 128, 64, 0],
        ),
        (
            "padded-512-live",
            segment(512, 104, 3, &[100, 100, 100, 100, 50, 100, 0], 3, false),
            vec![2, 255, 255],
        ),
        (
            "many-slots-4k",
            segment(4096, 1000, 24, &big, 30, true),
            vec![],
        ),
    ];
    for (name, seg, params) in seeds {
        let mut bytes = seg.to_bytes();
        HostileSegment::new(&bytes).expect("a snapshot validates");
        bytes.extend_from_slice(&params);
        std::fs::write(dir.join(name), &bytes).expect("write a seed");
        println!("{name}: {} bytes", bytes.len());
    }
}
