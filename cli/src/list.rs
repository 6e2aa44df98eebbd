//! `shmcast list`: every shmcast segment in /dev/shm.
//!
//! Each regular file is inspected read-only (the core checks the magic number and every
//! header field). What fails with "not a shmcast segment" errors (another magic number, an
//! all-zero header, too small for a header) is someone else's object and is shown only with
//! `--all`; a segment that carries the shmcast magic but fails validation (another layout
//! version, a corrupt or truncated header) is always shown, with the reason, since it is
//! probably a leftover to remove.

use crate::args::ListArgs;
use crate::error::Failure;
use crate::out::{self, Align, Out, Table};
use crate::stat::{consumer_counts, pid, producer_state, JSON_VERSION};
use crate::target::{not_a_file, SHM_DIR};
use serde_json::{json, Value};
use shmcast::{OpenError, SegmentError, Snapshot};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// What an object in /dev/shm turned out to be.
#[derive(Debug)]
enum Found {
    /// A valid segment.
    Segment(Snapshot),
    /// A shmcast segment (by its magic number) that fails validation: always listed.
    Unusable(String),
    /// Not a shmcast segment, or not readable: listed with `--all`.
    Other(String),
}

#[derive(Debug)]
struct Entry {
    name: String,
    found: Found,
}

pub(crate) fn run(args: &ListArgs) -> Result<(), Failure> {
    let entries = scan(Path::new(SHM_DIR))?;
    let mut out = Out::new();
    if args.json {
        let doc = json_document(&entries, args.all);
        out.put(&serde_json::to_string_pretty(&doc).expect("a JSON value serializes"))?;
        out.put("\n")?;
    } else {
        out.put(&human(&entries, args.all))?;
    }
    out.flush()
}

/// Inspect every entry of `dir`, sorted by name. Objects that vanish meanwhile are left out.
fn scan(dir: &Path) -> Result<Vec<Entry>, Failure> {
    let read =
        std::fs::read_dir(dir).map_err(|e| Failure::new(format!("list {}: {e}", dir.display())))?;
    let mut magic = Magic::default();
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Failure::new(format!("list {}: {e}", dir.display())))?;
        let Ok(name) = entry.file_name().into_string() else {
            let shown = entry.file_name().to_string_lossy().into_owned();
            entries.push(Entry {
                name: shown,
                found: Found::Other("its name is not UTF-8".into()),
            });
            continue;
        };
        let found = match entry.file_type() {
            // Only regular files are opened: opening a FIFO would block.
            Ok(t) => match not_a_file(t) {
                Some(kind) => Some(Found::Other(kind.to_string())),
                None => classify(&name, &entry.path(), &mut magic),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some(Found::Other(format!("cannot stat it: {e}"))),
        };
        if let Some(found) = found {
            entries.push(Entry { name, found });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Inspect one named object; `None` if it vanished.
fn classify(name: &str, path: &Path, magic: &mut Magic) -> Option<Found> {
    Some(match shmcast::inspect(name) {
        Ok(snap) => Found::Segment(snap),
        Err(OpenError::NotFound(_)) => return None,
        Err(OpenError::InvalidName { reason, .. }) => {
            Found::Other(format!("not a name shmcast accepts: {reason}"))
        }
        Err(OpenError::Segment(
            e @ (SegmentError::BadMagic { .. } | SegmentError::Uninitialized),
        )) => Found::Other(e.to_string()),
        // Too small for its header, or for what its header says: ours only if it starts
        // with our magic number.
        Err(OpenError::Segment(e @ SegmentError::Truncated { .. })) => {
            if magic.starts(path) {
                Found::Unusable(e.to_string())
            } else {
                Found::Other(format!("not a shmcast segment ({e})"))
            }
        }
        Err(OpenError::Segment(e)) => Found::Unusable(e.to_string()),
        Err(e) => Found::Other(format!("cannot inspect it: {e}")),
    })
}

/// The magic number this build writes, learnt from a segment it creates (the core does not
/// export it), to tell a truncated shmcast segment from someone else's small object.
#[derive(Debug, Default)]
struct Magic {
    /// Not looked up yet; looked up and found (or not).
    word: Option<Option<[u8; 8]>>,
}

impl Magic {
    fn word(&mut self) -> Option<[u8; 8]> {
        *self.word.get_or_insert_with(|| {
            // The smallest anonymous segment: a sealed memfd that vanishes with the handle.
            let producer = shmcast::Producer::builder()
                .capacity(4096)
                .create_anonymous()
                .ok()?;
            let file = File::from(producer.fd()?.try_clone_to_owned().ok()?);
            first_word(&file)
        })
    }

    /// Does the file at `path` start with the shmcast magic number?
    fn starts(&mut self, path: &Path) -> bool {
        let Some(magic) = self.word() else {
            return false;
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            // Never follow a link or block on a FIFO swapped in since the directory scan.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        file.ok()
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
            .and_then(|f| first_word(&f))
            == Some(magic)
    }
}

fn first_word(file: &File) -> Option<[u8; 8]> {
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, 0).ok()?;
    Some(word)
}

fn segment_json(name: &str, snap: &Snapshot) -> Value {
    let (alive, dead) = consumer_counts(snap);
    json!({
        "name": name,
        "status": "ok",
        "error": null,
        "segment_size": snap.segment_size,
        "capacity": snap.capacity,
        "max_message": snap.max_message,
        "max_consumers": snap.max_consumers,
        "producer_state": producer_state(snap.producer.state),
        "producer_pid": snap.producer.pid,
        "consumers_alive": alive,
        "consumers_dead": dead,
        "next_seq": snap.producer.next_seq,
    })
}

fn unusable_json(name: &str, error: &str) -> Value {
    json!({
        "name": name,
        "status": "unusable",
        "error": error,
        "segment_size": null,
        "capacity": null,
        "max_message": null,
        "max_consumers": null,
        "producer_state": null,
        "producer_pid": null,
        "consumers_alive": null,
        "consumers_dead": null,
        "next_seq": null,
    })
}

/// The `list --json` document (fields documented in the README).
fn json_document(entries: &[Entry], all: bool) -> Value {
    let mut segments = Vec::new();
    let mut others = Vec::new();
    let mut hidden = 0;
    for e in entries {
        match &e.found {
            Found::Segment(snap) => segments.push(segment_json(&e.name, snap)),
            Found::Unusable(why) => segments.push(unusable_json(&e.name, why)),
            Found::Other(why) if all => others.push(json!({ "name": e.name, "reason": why })),
            Found::Other(_) => hidden += 1,
        }
    }
    json!({
        "version": JSON_VERSION,
        "directory": SHM_DIR,
        "segments": segments,
        "others": others,
        "others_hidden": hidden,
    })
}

fn human(entries: &[Entry], all: bool) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("SIZE", Align::Right),
        ("CAPACITY", Align::Right),
        ("PRODUCER", Align::Left),
        ("PID", Align::Right),
        ("CONSUMERS", Align::Left),
        ("NEXT SEQ", Align::Right),
    ]);
    let mut unusable = Vec::new();
    let mut others = Vec::new();
    for e in entries {
        match &e.found {
            Found::Segment(snap) => {
                let (alive, dead) = consumer_counts(snap);
                t.row(vec![
                    e.name.clone(),
                    out::bytes(snap.segment_size),
                    out::bytes(snap.capacity),
                    producer_state(snap.producer.state).to_string(),
                    pid(snap.producer.pid),
                    if dead == 0 {
                        format!("{alive} alive")
                    } else {
                        format!("{alive} alive, {dead} dead")
                    },
                    snap.producer.next_seq.to_string(),
                ]);
            }
            Found::Unusable(why) => unusable.push(format!("  {}: {why}\n", e.name)),
            Found::Other(why) => others.push(format!("  {}: {why}\n", e.name)),
        }
    }
    let segments = entries.len() - unusable.len() - others.len();
    let mut s = String::new();
    if segments == 0 {
        s.push_str(&format!("no shmcast segments in {SHM_DIR}\n"));
    } else {
        s.push_str(&t.render());
    }
    if !unusable.is_empty() {
        s.push_str(
            "\nshmcast segments that fail validation (`shmcast rm --force NAME` removes one):\n",
        );
        s.extend(unusable);
    }
    if all && !others.is_empty() {
        s.push_str("\nnot shmcast segments:\n");
        s.extend(others);
    } else if !others.is_empty() {
        s.push_str(&format!(
            "\n({} other object{} in {SHM_DIR} not shown: --all lists them)\n",
            others.len(),
            if others.len() == 1 { "" } else { "s" }
        ));
    }
    s
}
