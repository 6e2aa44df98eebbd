//! Arguments a caller can get wrong: ring geometry, message sizes, names, names that are
//! taken, a full slot table. Each is a clear error, and nothing is left half-made.

mod common;

use common::{ShmName, TempPath, HANG_GUARD};
use shmcast::{
    Consumer, CreateError, OpenError, Producer, SendError, SendTimeoutError, TryRecvError,
    TrySendError, MAX_NAME_LEN,
};
use std::time::Duration;

fn refused_config(builder: shmcast::ProducerBuilder) -> String {
    match builder.create_in_process() {
        Err(CreateError::InvalidConfig(why)) => why,
        other => panic!("expected InvalidConfig for {builder:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Geometry.

#[test]
fn a_capacity_that_is_not_a_power_of_two_is_refused() {
    for capacity in [3000, 4095, 65537, 3 << 20] {
        let why = refused_config(Producer::builder().capacity(capacity));
        assert!(why.contains("power of two"), "{why}");
    }
}

#[test]
fn a_capacity_below_256_bytes_is_refused() {
    for capacity in [0, 1, 128] {
        refused_config(Producer::builder().capacity(capacity));
    }
    assert!(Producer::builder()
        .capacity(256)
        .create_in_process()
        .is_ok());
}

#[test]
fn a_capacity_above_1_tib_is_refused() {
    for capacity in [1 << 41, 1 << 63] {
        refused_config(Producer::builder().capacity(capacity));
    }
}

#[test]
fn a_refused_configuration_leaves_no_segment_behind() {
    let name = ShmName::new("refused-config");
    assert!(matches!(
        Producer::builder().capacity(3000).create(name.as_str()),
        Err(CreateError::InvalidConfig(_))
    ));
    assert!(matches!(
        Consumer::builder().open(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
}

#[test]
fn a_max_message_above_a_quarter_of_the_capacity_is_refused() {
    // A 4096-byte ring: a record is at most 1024 bytes, 24 of them header.
    let why = refused_config(Producer::builder().capacity(4096).max_message(1001));
    assert!(why.contains("raise the capacity"), "{why}");
    refused_config(Producer::builder().capacity(4096).max_message(usize::MAX));
    let producer = Producer::builder()
        .capacity(4096)
        .max_message(1000)
        .create_in_process()
        .expect("the largest max_message is accepted");
    assert_eq!(producer.max_message(), 1000);
}

#[test]
fn a_max_message_the_header_cannot_record_is_refused_not_truncated() {
    // The header records max_message in 32 bits. A 32 GiB ring allows records of 8 GiB:
    // asking for 4 GiB + 5 bytes must be refused or honoured, never turned into 5 bytes.
    // (The memfd is sparse: only the header is ever touched.)
    let asked = (1usize << 32) + 5;
    match Producer::builder()
        .capacity(1 << 35)
        .max_message(asked)
        .create_anonymous()
    {
        Err(CreateError::InvalidConfig(_)) => {}
        Ok(producer) => assert_eq!(producer.max_message(), asked),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn zero_consumer_slots_are_refused() {
    refused_config(Producer::builder().max_consumers(0));
}

#[test]
fn more_than_4096_consumer_slots_are_refused() {
    refused_config(Producer::builder().max_consumers(4097));
    assert!(Producer::builder()
        .max_consumers(4096)
        .create_in_process()
        .is_ok());
}

// ---------------------------------------------------------------------------------------
// Message sizes.

/// A real segment (memfd) with a 1000-byte maximum message and one consumer.
fn small_segment() -> (Producer, Consumer) {
    let producer = Producer::builder()
        .capacity(4096)
        .create_anonymous()
        .expect("create");
    assert_eq!(producer.max_message(), 1000);
    let consumer = Consumer::builder().attach_to(&producer).expect("attach");
    (producer, consumer)
}

const TOO_LARGE: usize = 1001;

fn assert_nothing_was_sent(consumer: &mut Consumer) {
    assert_eq!(consumer.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[test]
fn send_refuses_a_message_larger_than_the_maximum() {
    let (mut producer, mut consumer) = small_segment();
    assert_eq!(
        producer.send(&[0; TOO_LARGE]),
        Err(SendError::TooLarge {
            len: TOO_LARGE,
            max: 1000
        })
    );
    assert_nothing_was_sent(&mut consumer);
}

#[test]
fn try_send_refuses_a_message_larger_than_the_maximum() {
    let (mut producer, mut consumer) = small_segment();
    assert_eq!(
        producer.try_send(&[0; TOO_LARGE]),
        Err(TrySendError::TooLarge {
            len: TOO_LARGE,
            max: 1000
        })
    );
    assert_nothing_was_sent(&mut consumer);
}

#[test]
fn send_timeout_refuses_a_message_larger_than_the_maximum() {
    let (mut producer, mut consumer) = small_segment();
    assert_eq!(
        producer.send_timeout(&[0; TOO_LARGE], Duration::from_secs(1)),
        Err(SendTimeoutError::TooLarge {
            len: TOO_LARGE,
            max: 1000
        })
    );
    assert_nothing_was_sent(&mut consumer);
}

#[test]
fn reserve_refuses_a_message_larger_than_the_maximum() {
    let (mut producer, mut consumer) = small_segment();
    assert_eq!(
        producer.reserve(TOO_LARGE).unwrap_err(),
        SendError::TooLarge {
            len: TOO_LARGE,
            max: 1000
        }
    );
    assert_eq!(
        producer.try_reserve(TOO_LARGE).unwrap_err(),
        TrySendError::TooLarge {
            len: TOO_LARGE,
            max: 1000
        }
    );
    assert_nothing_was_sent(&mut consumer);
}

#[test]
fn a_message_of_exactly_the_maximum_is_sent() {
    let (mut producer, mut consumer) = small_segment();
    producer.send(&[7; 1000]).expect("send");
    assert_eq!(&*consumer.recv().expect("recv"), &[7; 1000][..]);
}

#[test]
fn a_too_large_send_on_a_full_ring_fails_at_once_instead_of_waiting() {
    let (mut producer, _reads_nothing) = small_segment();
    while producer.try_send(&[1; 100]).is_ok() {}
    let (done, result) = std::sync::mpsc::channel();
    // Send from another thread so that a send that waits shows as a hang-guard failure.
    std::thread::spawn(move || {
        let _ = done.send(producer.send(&[0; TOO_LARGE]));
        drop(producer);
    });
    let outcome = result
        .recv_timeout(HANG_GUARD)
        .expect("send of a too-large message waited for room");
    assert_eq!(
        outcome,
        Err(SendError::TooLarge {
            len: TOO_LARGE,
            max: 1000
        })
    );
}

// ---------------------------------------------------------------------------------------
// Names.

/// Names that are empty, contain a '/', climb out with '..', are too long, or start with
/// '.' (hidden or special entries), and characters outside `[A-Za-z0-9._-]`.
fn bad_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        "/",
        "a/b",
        "/abs",
        "trailing/",
        ".",
        "..",
        "../escape",
        "a/../b",
        ".hidden",
        "sp ace",
        "nul\0byte",
        "caf\u{e9}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("x".repeat(MAX_NAME_LEN + 1));
    names.push("x".repeat(4096));
    names
}

#[test]
fn creating_a_segment_with_a_bad_name_is_refused() {
    for name in bad_names() {
        match Producer::builder().capacity(4096).create(&name) {
            Err(CreateError::InvalidName { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }
}

#[test]
fn opening_a_segment_with_a_bad_name_is_refused() {
    for name in bad_names() {
        assert!(
            matches!(
                Consumer::builder().open(&name),
                Err(OpenError::InvalidName { .. })
            ),
            "consumer open {name:?}"
        );
        assert!(
            matches!(
                Producer::builder().open(&name),
                Err(OpenError::InvalidName { .. })
            ),
            "producer takeover {name:?}"
        );
    }
}

#[test]
fn removing_a_segment_with_a_bad_name_is_refused() {
    for name in bad_names() {
        let e = shmcast::remove(&name).unwrap_err();
        assert!(
            matches!(e, shmcast::RemoveError::InvalidName { .. }),
            "{name:?}: {e}"
        );
        let e = shmcast::force_remove(&name).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{name:?}: {e}");
    }
}

#[test]
fn a_name_of_the_maximum_length_is_accepted() {
    let prefix = format!("shmcast-test-{}-", std::process::id());
    let name = ShmName::new(&"x".repeat(MAX_NAME_LEN - prefix.len()));
    assert_eq!(name.as_str().len(), MAX_NAME_LEN);
    let mut producer = Producer::builder()
        .capacity(4096)
        .create(name.as_str())
        .expect("create");
    let mut consumer = Consumer::builder().open(name.as_str()).expect("open");
    producer.send(b"long name").expect("send");
    assert_eq!(&*consumer.recv().expect("recv"), b"long name");
}

// ---------------------------------------------------------------------------------------
// Taken names, full slot tables.

#[test]
fn creating_a_name_that_exists_is_refused_and_leaves_the_segment_alone() {
    let name = ShmName::new("exists");
    let mut first = Producer::builder()
        .capacity(4096)
        .create(name.as_str())
        .expect("create");
    let mut consumer = Consumer::builder().open(name.as_str()).expect("open");
    match Producer::builder().capacity(4096).create(name.as_str()) {
        Err(CreateError::AlreadyExists(what)) => assert!(what.contains(name.as_str())),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The first segment still works, and its name still opens it.
    first.send(b"still here").expect("send");
    assert_eq!(&*consumer.recv().expect("recv"), b"still here");
    let mut late = Consumer::builder()
        .open(name.as_str())
        .expect("the name survives");
    first.send(b"again").expect("send");
    assert_eq!(&*late.recv().expect("recv"), b"again");
}

#[test]
fn creating_a_path_that_exists_is_refused_and_leaves_the_file_alone() {
    let path = TempPath::new("exists");
    std::fs::write(path.path(), b"not yours").expect("write");
    assert!(matches!(
        Producer::builder().capacity(4096).create_path(path.path()),
        Err(CreateError::AlreadyExists(_))
    ));
    assert_eq!(std::fs::read(path.path()).expect("read"), b"not yours");
}

#[test]
fn a_full_slot_table_refuses_another_consumer() {
    let name = ShmName::new("full-slots");
    let _producer = Producer::builder()
        .capacity(4096)
        .max_consumers(2)
        .create(name.as_str())
        .expect("create");
    let first = Consumer::builder().open(name.as_str()).expect("first");
    let _second = Consumer::builder().open(name.as_str()).expect("second");
    assert!(matches!(
        Consumer::builder().open(name.as_str()),
        Err(OpenError::NoFreeSlot { max_consumers: 2 })
    ));
    // A consumer that leaves frees its slot.
    drop(first);
    Consumer::builder()
        .open(name.as_str())
        .expect("a freed slot is reused");
}
