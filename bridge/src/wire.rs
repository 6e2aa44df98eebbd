//! The bridge's wire format: a fixed 48-byte header in front of each message's bytes.
//!
//! ```text
//! offset size field
//!      0    2 magic          0x5342 ("SB", little-endian)
//!      2    1 version        1
//!      3    1 kind           0 = data, 1 = end of stream
//!      4    4 reserved       0
//!      8    8 source         identity of the source ring (device and inode of its segment)
//!     16    8 session        random id of one exporter attachment
//!     24    8 session_start  wall-clock start of that attachment, ns since the Unix epoch
//!     32    8 pub_seq        this sample's number in the session (0, 1, 2, ...; data and
//!                            end samples alike)
//!     40    8 ring_seq       data: the message's sequence number in the source ring;
//!                            end: the sequence number the source's next message would have
//!     48    … payload        data: the message, unmodified; end: empty
//! ```
//!
//! All integers are little-endian. `pub_seq` counts what the exporter published, `ring_seq`
//! what the source ring numbered: a jump in `pub_seq` is loss between the hosts, the rest of
//! a jump in `ring_seq` is loss before the exporter published (a lossy export that lagged,
//! or an exporter that was not running).

use std::fmt;

/// Bytes of header in front of every message on the wire.
pub const HEADER_LEN: usize = 48;

const MAGIC: u16 = 0x5342;
const VERSION: u8 = 1;

/// What a sample carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One message of the source ring.
    Data,
    /// The source ring was closed by its producer: the stream ended cleanly.
    End,
}

/// The header of one sample.
///
/// # Examples
/// ```
/// use shmcast_bridge::wire::{Header, Kind, HEADER_LEN};
/// let h = Header {
///     kind: Kind::Data,
///     source: 1,
///     session: 2,
///     session_start: 3,
///     pub_seq: 0,
///     ring_seq: 41,
/// };
/// let mut sample = h.to_bytes().to_vec();
/// sample.extend_from_slice(b"payload");
/// assert_eq!(Header::decode(&sample), Ok(h));
/// assert_eq!(&sample[HEADER_LEN..], b"payload");
/// assert!(Header::decode(b"not a bridge sample").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Data or end of stream.
    pub kind: Kind,
    /// Identity of the source ring (its segment's device and inode, mixed).
    pub source: u64,
    /// Random id of the exporter attachment that published the sample.
    pub session: u64,
    /// When that attachment started, in ns since the Unix epoch (orders sessions).
    pub session_start: u64,
    /// The sample's number within its session (data and end samples alike).
    pub pub_seq: u64,
    /// Data: the message's sequence number in the source ring. End: the next one.
    pub ring_seq: u64,
}

/// A sample that is not a bridge sample of this version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header.
    Short {
        /// Its length.
        len: usize,
    },
    /// The first two bytes are not the bridge's magic number.
    BadMagic {
        /// What was found.
        found: u16,
    },
    /// Another wire version.
    Version {
        /// The version found.
        found: u8,
    },
    /// An unknown sample kind.
    Kind {
        /// The kind found.
        found: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Short { len } => write!(
                f,
                "sample of {len} bytes is shorter than the {HEADER_LEN}-byte bridge header: \
                 something other than shmcast-bridge publishes on this key expression"
            ),
            DecodeError::BadMagic { found } => write!(
                f,
                "sample does not start with the bridge's magic number (found {found:#06x}): \
                 something other than shmcast-bridge publishes on this key expression"
            ),
            DecodeError::Version { found } => write!(
                f,
                "sample has bridge wire version {found}, this build reads {VERSION}: run the \
                 same shmcast-bridge version on both hosts"
            ),
            DecodeError::Kind { found } => write!(
                f,
                "sample has unknown kind {found}: run the same shmcast-bridge version on both \
                 hosts"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Header {
    /// Write the header into the first [`HEADER_LEN`] bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`HEADER_LEN`] (a bug in the caller).
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        out[2] = VERSION;
        out[3] = match self.kind {
            Kind::Data => 0,
            Kind::End => 1,
        };
        out[4..8].fill(0);
        out[8..16].copy_from_slice(&self.source.to_le_bytes());
        out[16..24].copy_from_slice(&self.session.to_le_bytes());
        out[24..32].copy_from_slice(&self.session_start.to_le_bytes());
        out[32..40].copy_from_slice(&self.pub_seq.to_le_bytes());
        out[40..48].copy_from_slice(&self.ring_seq.to_le_bytes());
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        self.encode(&mut b);
        b
    }

    /// Read the header at the start of `bytes`; the payload follows at [`HEADER_LEN`].
    ///
    /// # Errors
    /// [`DecodeError`] if `bytes` is not a bridge sample of this version.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Short { len: bytes.len() });
        }
        let u64_at = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        if bytes[2] != VERSION {
            return Err(DecodeError::Version { found: bytes[2] });
        }
        let kind = match bytes[3] {
            0 => Kind::Data,
            1 => Kind::End,
            found => return Err(DecodeError::Kind { found }),
        };
        Ok(Header {
            kind,
            source: u64_at(8),
            session: u64_at(16),
            session_start: u64_at(24),
            pub_seq: u64_at(32),
            ring_seq: u64_at(40),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            kind: Kind::Data,
            source: 0x0102_0304_0506_0708,
            session: u64::MAX,
            session_start: 1_700_000_000_000_000_000,
            pub_seq: 41,
            ring_seq: 99,
        }
    }

    #[test]
    fn header_round_trips() {
        for kind in [Kind::Data, Kind::End] {
            let h = Header { kind, ..sample() };
            assert_eq!(Header::decode(&h.to_bytes()), Ok(h));
        }
    }

    #[test]
    fn header_is_little_endian_at_documented_offsets() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..4], &[0x42, 0x53, 1, 0]);
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[40..48], &99u64.to_le_bytes());
    }

    #[test]
    fn foreign_samples_are_refused() {
        let good = sample().to_bytes();
        assert_eq!(
            Header::decode(&good[..47]),
            Err(DecodeError::Short { len: 47 })
        );
        let mut bad = good;
        bad[0] = b'x';
        assert!(matches!(
            Header::decode(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut bad = good;
        bad[2] = 2;
        assert_eq!(Header::decode(&bad), Err(DecodeError::Version { found: 2 }));
        let mut bad = good;
        bad[3] = 7;
        assert_eq!(Header::decode(&bad), Err(DecodeError::Kind { found: 7 }));
    }
}
