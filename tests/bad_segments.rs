//! Opening something that is not a sound segment: every header field corrupted in turn, a
//! truncated file, a file of zeros, a segment of another layout version. Each is refused
//! with an error that names what is wrong (never a panic), whichever way it is opened: by
//! path, by name, by descriptor, or by a producer taking it over.

#[macro_use]
mod common;

use common::harness::Outcome;

use common::{ShmName, TempPath};
use shmcast::{Consumer, OpenError, Producer, SegmentError};
use std::collections::HashMap;
use std::os::fd::AsFd;

/// A field of the header's layout line: offsets from the const asserts in src/layout.rs.
#[derive(Clone, Copy, Debug)]
struct Field {
    name: &'static str,
    at: usize,
    width: usize,
}

const fn field(name: &'static str, at: usize, width: usize) -> Field {
    Field { name, at, width }
}

const MAGIC: Field = field("magic", 0, 8);
const VERSION: Field = field("version", 8, 4);
const HEADER_SIZE: Field = field("header_size", 12, 4);
const SLOT_SIZE: Field = field("slot_size", 16, 4);
const MAX_CONSUMERS: Field = field("max_consumers", 20, 4);
const MAX_MESSAGE: Field = field("max_message", 24, 4);
const RECORD_HEADER: Field = field("record_header", 28, 4);
const SLOTS_OFFSET: Field = field("slots_offset", 32, 8);
const DATA_OFFSET: Field = field("data_offset", 40, 8);
const CAPACITY: Field = field("capacity", 48, 8);
const TOTAL_SIZE: Field = field("total_size", 56, 8);

fn get(bytes: &[u8], f: Field) -> u64 {
    let mut w = [0u8; 8];
    w[..f.width].copy_from_slice(&bytes[f.at..f.at + f.width]);
    u64::from_le_bytes(w)
}

fn set(bytes: &mut [u8], f: Field, value: u64) {
    assert!(
        f.width == 8 || value <= u64::from(u32::MAX),
        "{value} does not fit {}",
        f.name
    );
    bytes[f.at..f.at + f.width].copy_from_slice(&value.to_le_bytes()[..f.width]);
}

/// The bytes of a valid segment (64 KiB ring, 8 slots, 1000-byte messages) that has
/// carried a message and been closed.
fn valid_segment(test: &str) -> Vec<u8> {
    let path = TempPath::new(&format!("{test}-template"));
    let mut producer = Producer::builder()
        .capacity(1 << 16)
        .max_consumers(8)
        .max_message(1000)
        .remove_on_drop(false)
        .create_path(path.path())
        .expect("create the template segment");
    producer.send(b"hello").expect("send");
    drop(producer);
    std::fs::read(path.path()).expect("read the template segment")
}

/// The ways to open a segment; all of them validate it.
#[derive(Clone, Copy, Debug)]
enum Opener {
    ConsumerByPath,
    ConsumerByName,
    ConsumerByFd,
    ProducerTakeover,
}

const OPENERS: [Opener; 4] = [
    Opener::ConsumerByPath,
    Opener::ConsumerByName,
    Opener::ConsumerByFd,
    Opener::ProducerTakeover,
];

/// Put `bytes` where `opener` looks for a segment, and open it that way.
fn open_as(opener: Opener, bytes: &[u8], test: &str) -> Result<(), OpenError> {
    match opener {
        Opener::ConsumerByPath => {
            let path = TempPath::new(test);
            std::fs::write(path.path(), bytes).expect("write the segment file");
            Consumer::builder().open_path(path.path()).map(drop)
        }
        Opener::ConsumerByName => {
            let name = ShmName::new(test);
            std::fs::write(name.dev_shm_path(), bytes).expect("write the shm object");
            Consumer::builder().open(name.as_str()).map(drop)
        }
        Opener::ConsumerByFd => {
            let path = TempPath::new(test);
            std::fs::write(path.path(), bytes).expect("write the segment file");
            let file = std::fs::File::options()
                .read(true)
                .write(true)
                .open(path.path())
                .expect("open the segment file");
            Consumer::builder().open_fd(file.as_fd()).map(drop)
        }
        Opener::ProducerTakeover => {
            let name = ShmName::new(test);
            std::fs::write(name.dev_shm_path(), bytes).expect("write the shm object");
            Producer::builder().open(name.as_str()).map(drop)
        }
    }
}

/// One bad segment and the error it must produce.
struct Case {
    /// What is wrong, for messages.
    what: &'static str,
    /// The part of the segment it is about: different parts must give different errors.
    part: &'static str,
    bytes: Vec<u8>,
    expected: SegmentError,
}

fn with(valid: &[u8], f: Field, value: u64) -> Vec<u8> {
    let mut b = valid.to_vec();
    set(&mut b, f, value);
    b
}

fn mismatch(valid: &[u8], f: Field, found: u64) -> SegmentError {
    SegmentError::LayoutMismatch {
        field: f.name,
        found,
        expected: get(valid, f),
    }
}

/// Each field of the layout line corrupted in turn.
fn corrupted_fields(valid: &[u8]) -> Vec<Case> {
    let v = |f| get(valid, f);
    let version = v(VERSION) as u32;
    let capacity = v(CAPACITY);
    let foreign = u64::from_le_bytes(*b"NOTSHMCA");
    let other_format = {
        let mut m = v(MAGIC).to_le_bytes();
        m[7] = m[7].wrapping_add(1);
        u64::from_le_bytes(m)
    };
    let case = |what, f: Field, value: u64, expected| Case {
        what,
        part: f.name,
        bytes: with(valid, f, value),
        expected,
    };
    let mismatched = |what, f: Field, value: u64| case(what, f, value, mismatch(valid, f, value));
    vec![
        case(
            "a foreign magic number",
            MAGIC,
            foreign,
            SegmentError::BadMagic { found: foreign },
        ),
        case(
            "the magic number of another format",
            MAGIC,
            other_format,
            SegmentError::BadMagic {
                found: other_format,
            },
        ),
        case(
            "the next layout version",
            VERSION,
            u64::from(version + 1),
            SegmentError::VersionMismatch {
                found: version + 1,
                expected: version,
            },
        ),
        mismatched("a larger header size", HEADER_SIZE, v(HEADER_SIZE) + 128),
        mismatched("a smaller slot size", SLOT_SIZE, v(SLOT_SIZE) / 2),
        mismatched(
            "a larger record header",
            RECORD_HEADER,
            v(RECORD_HEADER) + 8,
        ),
        case(
            "a capacity that is not a power of two",
            CAPACITY,
            capacity + 1,
            SegmentError::BadCapacity {
                found: capacity + 1,
            },
        ),
        case(
            "a zero capacity",
            CAPACITY,
            0,
            SegmentError::BadCapacity { found: 0 },
        ),
        case(
            "a capacity below the minimum",
            CAPACITY,
            128,
            SegmentError::BadCapacity { found: 128 },
        ),
        case(
            "a capacity above the maximum",
            CAPACITY,
            1 << 41,
            SegmentError::BadCapacity { found: 1 << 41 },
        ),
        case(
            "no consumer slots",
            MAX_CONSUMERS,
            0,
            SegmentError::BadMaxConsumers { found: 0 },
        ),
        case(
            "too many consumer slots",
            MAX_CONSUMERS,
            4097,
            SegmentError::BadMaxConsumers { found: 4097 },
        ),
        case(
            "a maximum message above a quarter of the capacity",
            MAX_MESSAGE,
            capacity / 4,
            SegmentError::BadMaxMessage {
                found: (capacity / 4) as u32,
                capacity,
            },
        ),
        case(
            "the largest maximum message",
            MAX_MESSAGE,
            u64::from(u32::MAX),
            SegmentError::BadMaxMessage {
                found: u32::MAX,
                capacity,
            },
        ),
        mismatched(
            "slots after the header",
            SLOTS_OFFSET,
            v(SLOTS_OFFSET) + 128,
        ),
        mismatched("slots inside the header", SLOTS_OFFSET, 0),
        mismatched(
            "a data ring a page later",
            DATA_OFFSET,
            v(DATA_OFFSET) + 4096,
        ),
        mismatched("a data ring over the slots", DATA_OFFSET, v(SLOTS_OFFSET)),
        mismatched("a total size one byte more", TOTAL_SIZE, v(TOTAL_SIZE) + 1),
        mismatched(
            "a total size one page less",
            TOTAL_SIZE,
            v(TOTAL_SIZE) - 4096,
        ),
    ]
}

/// Files shorter than the segment they hold.
fn truncated_files(valid: &[u8]) -> Vec<Case> {
    let total = valid.len() as u64;
    let header = get(valid, HEADER_SIZE);
    let data = get(valid, DATA_OFFSET);
    let cut = |what, len: u64, needed| Case {
        what,
        part: "file size",
        bytes: valid[..len as usize].to_vec(),
        expected: SegmentError::Truncated { size: len, needed },
    };
    vec![
        cut("a file one byte short", total - 1, total),
        cut("a file cut where the data ring starts", data, total),
        cut("a file cut inside the header", header / 2, header),
        cut("an empty file", 0, header),
    ]
}

/// Files of zeros: a segment whose creator never got to write its header.
fn zeros(valid: &[u8]) -> Vec<Case> {
    let mut zero_header = valid.to_vec();
    zero_header[..get(valid, HEADER_SIZE) as usize].fill(0);
    vec![
        Case {
            what: "a file of zeros the size of the segment",
            part: "whole header",
            bytes: vec![0; valid.len()],
            expected: SegmentError::Uninitialized,
        },
        Case {
            what: "a segment whose header is zeros",
            part: "whole header",
            bytes: zero_header,
            expected: SegmentError::Uninitialized,
        },
    ]
}

/// A segment written by another layout version, whose other fields follow that layout:
/// the version is judged before anything it may have redefined.
fn another_layout_version(valid: &[u8]) -> Vec<Case> {
    let version = get(valid, VERSION) as u32;
    let mut b = valid.to_vec();
    set(&mut b, VERSION, u64::from(version + 1));
    set(&mut b, HEADER_SIZE, get(valid, HEADER_SIZE) * 2);
    set(&mut b, SLOT_SIZE, 64);
    set(&mut b, RECORD_HEADER, 32);
    set(&mut b, SLOTS_OFFSET, get(valid, HEADER_SIZE) * 2);
    set(&mut b, TOTAL_SIZE, get(valid, TOTAL_SIZE) + 4096);
    vec![Case {
        what: "a segment of the next layout version",
        part: "version",
        bytes: b,
        expected: SegmentError::VersionMismatch {
            found: version + 1,
            expected: version,
        },
    }]
}

/// Open every case every way; collect every discrepancy, then fail with all of them.
fn assert_refused(test: &str, cases: &[Case]) {
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        for opener in OPENERS {
            match open_as(opener, &case.bytes, &format!("{test}-{i}")) {
                Err(OpenError::Segment(e)) if e == case.expected => {}
                other => wrong.push(format!(
                    "{} ({opener:?}): expected Segment({:?}), got {other:?}",
                    case.what, case.expected
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

fn an_intact_copy_of_a_segment_opens_every_way() {
    let valid = valid_segment("intact");
    for opener in OPENERS {
        if let Err(e) = open_as(opener, &valid, "intact-copy") {
            panic!("{opener:?}: {e}");
        }
    }
}

fn each_corrupted_header_field_is_refused_with_the_error_for_that_field() {
    let valid = valid_segment("fields");
    let cases = corrupted_fields(&valid);
    let fields = [
        MAGIC,
        VERSION,
        HEADER_SIZE,
        SLOT_SIZE,
        MAX_CONSUMERS,
        MAX_MESSAGE,
        RECORD_HEADER,
        SLOTS_OFFSET,
        DATA_OFFSET,
        CAPACITY,
        TOTAL_SIZE,
    ];
    for f in fields {
        assert!(
            cases.iter().any(|c| c.part == f.name),
            "no case corrupts {}",
            f.name
        );
    }
    assert_refused("fields", &cases);
}

fn a_truncated_segment_is_refused_as_truncated() {
    let valid = valid_segment("truncated");
    assert_refused("truncated", &truncated_files(&valid));
}

fn a_file_of_zeros_is_refused_as_uninitialized() {
    let valid = valid_segment("zeros");
    assert_refused("zeros", &zeros(&valid));
}

fn a_segment_of_another_layout_version_is_refused_as_a_version_mismatch() {
    let valid = valid_segment("version");
    assert_refused("version", &another_layout_version(&valid));
}

/// The variant, and for a layout mismatch the field: what tells one corruption from
/// another.
fn kind(e: &SegmentError) -> String {
    match e {
        SegmentError::LayoutMismatch { field, .. } => format!("LayoutMismatch({field})"),
        other => {
            let debug = format!("{other:?}");
            debug
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        }
    }
}

fn different_corruptions_are_told_apart() {
    let valid = valid_segment("distinct");
    let mut cases = corrupted_fields(&valid);
    cases.extend(truncated_files(&valid));
    cases.extend(zeros(&valid));
    cases.extend(another_layout_version(&valid));
    let mut seen: HashMap<String, &'static str> = HashMap::new();
    for (i, case) in cases.iter().enumerate() {
        let e = match open_as(
            Opener::ConsumerByPath,
            &case.bytes,
            &format!("distinct-{i}"),
        ) {
            Err(OpenError::Segment(e)) => e,
            other => panic!("{}: {other:?}", case.what),
        };
        let part = *seen.entry(kind(&e)).or_insert(case.part);
        assert_eq!(
            part, case.part,
            "{} is reported like a corrupt {part}: {e:?}",
            case.what
        );
    }
}

fn a_version_mismatch_names_both_versions() {
    let valid = valid_segment("message");
    let version = get(&valid, VERSION);
    let bytes = with(&valid, VERSION, version + 1);
    let e = open_as(Opener::ConsumerByPath, &bytes, "message-copy").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("version {}", version + 1)) && text.contains(&version.to_string()),
        "{text}"
    );
}

fn opening_a_name_that_does_not_exist_is_not_found() {
    let name = ShmName::new("absent");
    assert!(matches!(
        Consumer::builder().open(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
    assert!(matches!(
        Producer::builder().open(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
}

fn opening_a_path_that_does_not_exist_is_not_found() {
    let path = TempPath::new("absent");
    assert!(matches!(
        Consumer::builder().open_path(path.path()),
        Err(OpenError::NotFound(_))
    ));
}

fn a_segment_owned_by_another_user_is_refused() -> Outcome {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        // Only chown makes a file foreign, and chown takes root: as root there is no
        // honest way to arrange this case.
        return Outcome::Skipped("running as root, nothing here belongs to another user".into());
    }
    // /dev/null belongs to root and anyone may open it read-write: for any other user it
    // is a foreign object at a path they can open.
    match Consumer::builder().open_path("/dev/null") {
        Err(OpenError::ForeignOwner { owner: 0, uid: u }) => assert_eq!(u, uid),
        other => panic!("expected ForeignOwner, got {other:?}"),
    }
    // Allowed explicitly, it gets as far as validation (it is no segment).
    assert!(matches!(
        Consumer::builder()
            .allow_foreign_owner(true)
            .open_path("/dev/null"),
        Err(OpenError::Segment(SegmentError::Truncated { size: 0, .. }))
    ));
    Outcome::Passed
}

fn main() {
    common::harness::main(
        None,
        &[
            case!(an_intact_copy_of_a_segment_opens_every_way),
            case!(each_corrupted_header_field_is_refused_with_the_error_for_that_field),
            case!(a_truncated_segment_is_refused_as_truncated),
            case!(a_file_of_zeros_is_refused_as_uninitialized),
            case!(a_segment_of_another_layout_version_is_refused_as_a_version_mismatch),
            case!(different_corruptions_are_told_apart),
            case!(a_version_mismatch_names_both_versions),
            case!(opening_a_name_that_does_not_exist_is_not_found),
            case!(opening_a_path_that_does_not_exist_is_not_found),
            skippable!(a_segment_owned_by_another_user_is_refused),
        ],
    );
}
