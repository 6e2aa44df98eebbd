//! The importer's saved position: a small shared file beside the ring, updated with plain
//! memory stores on every sample, so a restarted importer (even after `SIGKILL`) knows how
//! far the ring got in the remote stream and can report exactly what it missed.
//!
//! The file holds two slots. The position reached after the ring's `m`-th message (`m`
//! messages committed in the ring) goes in slot `m % 2`, tagged `m`. Before committing
//! message `m + 1` the importer writes slot `(m + 1) % 2`, leaving slot `m % 2` intact, so
//! whatever instant it dies at, the slot tagged with the ring's message count describes the
//! ring's contents. A slot is written tag-last (the tag is invalidated first); a slot whose
//! tag does not match is ignored.

use crate::error::BridgeError;
use crate::tracker::Position;
use memmap2::MmapMut;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};

const MAGIC: u64 = 0x7473_6567_6469_7262; // "bridgest"
const VERSION: u64 = 1;
const FILE_LEN: u64 = 4096;
/// Words per slot: tag, flags, source, session, session_start, pub_seq, seen_ring_seq, next.
const SLOT_WORDS: usize = 8;
const SLOTS_AT: usize = 2;
const NO_TAG: u64 = u64::MAX;
/// The `flags` word: bit 0 = a position is recorded, bit 1 = the stream ended.
const HAS_POSITION: u64 = 1;
const ENDED: u64 = 2;

/// An open state file.
#[derive(Debug)]
pub(crate) struct StateFile {
    map: MmapMut,
    path: PathBuf,
}

impl StateFile {
    /// Open the state file at `path`, creating it (mode 0600) if missing. A new file, or
    /// `reset`, starts with no position.
    pub(crate) fn open(path: &Path, reset: bool) -> Result<StateFile, BridgeError> {
        let io = |what: &str| {
            let context = format!("{what} importer state file {}", path.display());
            move |source| BridgeError::Io { context, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io("cannot open"))?;
        let len = file.metadata().map_err(io("cannot stat"))?.len();
        let fresh = len == 0;
        if !fresh && len != FILE_LEN {
            return Err(BridgeError::StateFile {
                path: path.display().to_string(),
                reason: format!("it is {len} bytes, a state file is {FILE_LEN}"),
            });
        }
        if fresh {
            file.set_len(FILE_LEN).map_err(io("cannot size"))?;
        }
        // SAFETY: the mapping is of a regular file we just opened read-write, FILE_LEN bytes
        // long. Other processes (a previous or concurrent importer) may change its bytes
        // under us: it is only ever accessed through atomics (`word`), never through
        // references to plain data.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io("cannot map"))?;
        let state = StateFile {
            map,
            path: path.to_path_buf(),
        };
        if !fresh {
            let magic = state.word(0).load(Acquire);
            let version = state.word(1).load(Acquire);
            if magic != MAGIC {
                return Err(BridgeError::StateFile {
                    path: path.display().to_string(),
                    reason: "it is not a shmcast-bridge state file".into(),
                });
            }
            if version != VERSION && !reset {
                return Err(BridgeError::StateFile {
                    path: path.display().to_string(),
                    reason: format!("it has version {version}, this build reads {VERSION}"),
                });
            }
        }
        if fresh || reset {
            state.clear();
        }
        Ok(state)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * 8 <= FILE_LEN as usize);
        // SAFETY: the mapping is page-aligned and FILE_LEN bytes long, so word `i` (checked
        // above) is in bounds and 8-byte aligned; it lives as long as `self`. It is shared
        // with other processes, which is why it is only accessed atomically.
        unsafe { &*(self.map.as_ptr().add(i * 8) as *const AtomicU64) }
    }

    fn clear(&self) {
        for slot in 0..2 {
            self.word(SLOTS_AT + slot * SLOT_WORDS)
                .store(NO_TAG, Release);
        }
        self.word(1).store(VERSION, Release);
        self.word(0).store(MAGIC, Release);
    }

    /// The position recorded for a ring holding `count` messages, if the slot for it is
    /// intact. `Some(None)`: the slot is intact and records no position.
    pub(crate) fn load(&self, count: u64) -> Option<Option<Position>> {
        let base = SLOTS_AT + (count % 2) as usize * SLOT_WORDS;
        let w = |i: usize| self.word(base + i).load(Acquire);
        if w(0) != count {
            return None;
        }
        let flags = w(1);
        if flags & HAS_POSITION == 0 {
            return Some(None);
        }
        Some(Some(Position {
            source: w(2),
            session: w(3),
            session_start: w(4),
            pub_seq: w(5),
            seen_ring_seq: w(6),
            next: w(7),
            ended: flags & ENDED != 0,
        }))
    }

    /// Record `pos` as the position for a ring holding `count` messages.
    pub(crate) fn store(&self, count: u64, pos: Option<&Position>) {
        let base = SLOTS_AT + (count % 2) as usize * SLOT_WORDS;
        let w = |i: usize, v: u64| self.word(base + i).store(v, Release);
        w(0, NO_TAG);
        match pos {
            None => w(1, 0),
            Some(p) => {
                w(1, HAS_POSITION | if p.ended { ENDED } else { 0 });
                w(2, p.source);
                w(3, p.session);
                w(4, p.session_start);
                w(5, p.pub_seq);
                w(6, p.seen_ring_seq);
                w(7, p.next);
            }
        }
        // Release: a reader that sees the tag sees the fields (ordering within this process;
        // a killed process's stores all land, in program order, in the shared page).
        w(0, count);
    }

    /// Delete the file.
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "shmcast-bridge-state-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn pos(next: u64) -> Position {
        Position {
            source: 1,
            session: 2,
            session_start: 3,
            pub_seq: 4,
            seen_ring_seq: next - 1,
            next,
            ended: next & 1 == 0,
        }
    }

    #[test]
    fn a_position_survives_reopening() {
        let path = temp("survives");
        let s = StateFile::open(&path, false).unwrap();
        assert_eq!(s.load(0), None, "a new file records nothing");
        s.store(0, None);
        assert_eq!(s.load(0), Some(None));
        s.store(1, Some(&pos(10)));
        s.store(2, Some(&pos(11)));
        drop(s);
        let s = StateFile::open(&path, false).unwrap();
        assert_eq!(s.load(2), Some(Some(pos(11))));
        // The slot of the previous count is untouched by the next one.
        assert_eq!(s.load(1), Some(Some(pos(10))));
        assert_eq!(s.load(3), None);
        s.remove();
        assert!(!path.exists());
    }

    #[test]
    fn an_interrupted_store_leaves_the_previous_slot_intact() {
        let path = temp("interrupted");
        let s = StateFile::open(&path, false).unwrap();
        s.store(5, Some(&pos(10)));
        // Dying after invalidating the next slot's tag, before committing message 6:
        s.word(SLOTS_AT).store(NO_TAG, Release);
        assert_eq!(s.load(5), Some(Some(pos(10))));
        assert_eq!(s.load(6), None);
        s.remove();
    }

    #[test]
    fn a_foreign_file_is_refused_and_left_alone() {
        let path = temp("foreign");
        std::fs::write(&path, vec![7u8; FILE_LEN as usize]).unwrap();
        assert!(matches!(
            StateFile::open(&path, false),
            Err(BridgeError::StateFile { .. })
        ));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            StateFile::open(&path, false),
            Err(BridgeError::StateFile { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        std::fs::remove_file(&path).unwrap();
    }
}
