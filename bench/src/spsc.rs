//! The streaming floor: the least a one-way stream of `size`-byte messages can cost between
//! two processes, i.e. what the hardware streams. A single-producer single-consumer ring of
//! slots in a shared memfd mapping, with nothing a real transport would need beyond that:
//!
//! - slots of `size` bytes rounded up to 8 (64-byte messages: one cache line per slot), the
//!   first 8 bytes of each slot its stamp: the message's own tag, stored last with
//!   `Release` (XORed with a constant so a zeroed slot is never a valid message);
//! - the consumer polls the stamp of its next slot (`Acquire`), and publishes its index
//!   lazily, every eighth of the ring;
//! - the producer caches the consumer's index and reloads it only when that cache says the
//!   ring is full.
//!
//! No variable length, no wrap record, no fan-out, no wake-ups, no validation of untrusted
//! data: the comparison shows what those cost.

use super::sys::SharedPage;
use super::transport::{ACK, QUIT};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

/// XORed into every stamp: a zeroed slot decodes to this, which is neither a sequence
/// number reached in practice nor [`QUIT`].
const STAMP_KEY: u64 = 0x2545_f491_4f6c_dd1d;
/// The consumer's index lives on its own 128-byte line at the start.
const SLOTS_AT: usize = 256;

/// One end of the streaming floor.
pub struct Spsc {
    page: SharedPage,
    /// Slots (a power of two).
    slots: u64,
    stride: usize,
    /// Next position to write (producer) or read (consumer).
    pos: u64,
    /// Producer: the position it may write up to (cached consumer index + slots).
    /// Consumer: the last index it published.
    mark: u64,
}

impl Spsc {
    fn geometry(size: usize, bytes: usize) -> (usize, u64) {
        let stride = (size.max(8) + 7) & !7;
        let slots = ((bytes / stride).max(16) as u64).next_power_of_two();
        (stride, slots)
    }

    /// Create the ring (the producer's end) for `size`-byte messages in about `bytes`.
    pub fn create(size: usize, bytes: usize) -> io::Result<Spsc> {
        let (stride, slots) = Self::geometry(size, bytes);
        let len = (SLOTS_AT + stride * slots as usize).next_multiple_of(4096);
        let page = SharedPage::create_len(len)?;
        Ok(Spsc {
            page,
            slots,
            stride,
            pos: 0,
            mark: slots,
        })
    }

    /// The descriptor to hand to the consumer's process.
    pub fn raw_fd(&self) -> RawFd {
        self.page.raw_fd()
    }

    /// Slots in the ring (to hand to the consumer with the descriptor).
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// The consumer's end, from the inherited descriptor and the creator's slot count.
    pub fn open(fd: std::os::fd::OwnedFd, size: usize, slots: u64) -> io::Result<Spsc> {
        let page = SharedPage::from_fd(fd)?;
        let stride = (size.max(8) + 7) & !7;
        if !slots.is_power_of_two() || SLOTS_AT + stride * slots as usize > page.size() {
            return Err(io::Error::other(format!(
                "stream floor: {slots} slots of {stride} B do not fit a {} B mapping",
                page.size()
            )));
        }
        Ok(Spsc {
            page,
            slots,
            stride,
            pos: 0,
            mark: 0,
        })
    }

    #[inline]
    fn slot(&self, pos: u64) -> usize {
        SLOTS_AT + (pos & (self.slots - 1)) as usize * self.stride
    }

    /// Producer: write one message (its first 8 bytes are its tag), waiting while full.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        debug_assert!(msg.len() <= self.stride && msg.len() >= 8);
        if self.pos >= self.mark {
            let start = Instant::now();
            loop {
                self.mark = self.page.atomic(0).load(Acquire) + self.slots;
                if self.pos < self.mark {
                    break;
                }
                std::hint::spin_loop();
                if start.elapsed() > Duration::from_secs(10) {
                    return Err(io::Error::other("stream floor: consumer stalled for 10 s"));
                }
            }
        }
        let at = self.slot(self.pos);
        // SAFETY: the consumer has moved past this slot (its published index is beyond
        // `pos - slots`), so nobody reads these bytes until the Release store of the stamp.
        unsafe { self.page.write(at + 8, &msg[8..]) };
        let tag = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
        self.page.atomic(at).store(tag ^ STAMP_KEY, Release);
        self.pos += 1;
        Ok(())
    }

    /// Consumer: the tag of the next message, spinning until it is there.
    #[inline]
    pub fn recv_tag(&mut self) -> io::Result<u64> {
        let at = self.slot(self.pos);
        let stamp = self.page.atomic(at);
        let mut polls = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            let tag = stamp.load(Acquire) ^ STAMP_KEY;
            if tag & !ACK == self.pos || tag == QUIT {
                self.pos += 1;
                if self.pos - self.mark >= self.slots / 8 {
                    self.page.atomic(0).store(self.pos, Release);
                    self.mark = self.pos;
                }
                return Ok(tag);
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if polls & 0xffff == 0
                && since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(10)
            {
                return Err(io::Error::other("stream floor: no message for 10 s"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    #[test]
    fn messages_arrive_in_order_across_many_laps() {
        let mut tx = Spsc::create(64, 4096).unwrap();
        // SAFETY: a duplicate of the producer's descriptor, owned by this OwnedFd only.
        let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(tx.raw_fd())) };
        let mut rx = Spsc::open(fd, 64, tx.slots()).unwrap();
        assert_eq!(rx.slots, tx.slots);
        let mut msg = vec![0x5au8; 64];
        for seq in 0..10 * tx.slots {
            let tag = if seq % 7 == 0 { seq | ACK } else { seq };
            msg[..8].copy_from_slice(&tag.to_le_bytes());
            tx.send(&msg).unwrap();
            assert_eq!(rx.recv_tag().unwrap(), tag);
        }
        msg[..8].copy_from_slice(&QUIT.to_le_bytes());
        tx.send(&msg).unwrap();
        assert_eq!(rx.recv_tag().unwrap(), QUIT);
    }

    #[test]
    fn the_producer_fills_the_ring_then_waits_for_the_consumer() {
        let mut tx = Spsc::create(8, 16 * 8).unwrap();
        // SAFETY: as above.
        let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(tx.raw_fd())) };
        let mut rx = Spsc::open(fd, 8, tx.slots()).unwrap();
        let n = tx.slots;
        for seq in 0..n {
            tx.send(&seq.to_le_bytes()).unwrap();
        }
        assert_eq!(tx.pos, tx.mark, "full: the next send must reload the index");
        for seq in 0..n / 8 {
            assert_eq!(rx.recv_tag().unwrap(), seq);
        }
        tx.send(&n.to_le_bytes()).unwrap();
        for seq in n / 8..=n {
            assert_eq!(rx.recv_tag().unwrap(), seq);
        }
    }
}
