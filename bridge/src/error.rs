//! The bridge's errors, each with a message that says what to do.

use std::fmt;
use std::io;

/// Setting up or running a bridge failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The zenoh configuration is not acceptable.
    Config(String),
    /// zenoh refused (opening the session, declaring, publishing).
    Zenoh {
        /// What was being done.
        context: String,
        /// zenoh's error.
        source: zenoh::Error,
    },
    /// Attaching to the source ring failed.
    OpenRing {
        /// The ring.
        ring: String,
        /// shmcast's error.
        source: shmcast::OpenError,
    },
    /// Creating the local ring failed.
    CreateRing {
        /// The ring.
        ring: String,
        /// shmcast's error.
        source: shmcast::CreateError,
    },
    /// The local ring already has a live producer (another importer, or an application).
    RingBusy {
        /// The ring.
        ring: String,
    },
    /// The source ring failed while being read (corrupt record).
    Source {
        /// The ring.
        ring: String,
        /// shmcast's error.
        source: shmcast::RecvError,
    },
    /// The importer's state file is not one of ours.
    StateFile {
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The operating system refused.
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Config(why) => write!(f, "invalid zenoh configuration: {why}"),
            BridgeError::Zenoh { context, source } => write!(f, "{context}: {source}"),
            BridgeError::OpenRing { ring, source } => {
                write!(f, "cannot attach to ring {ring}: {source}")
            }
            BridgeError::CreateRing { ring, source } => {
                write!(f, "cannot create ring {ring}: {source}")
            }
            BridgeError::RingBusy { ring } => write!(
                f,
                "ring {ring} already has a live producer (another importer?); stop it first or \
                 import into another ring"
            ),
            BridgeError::Source { ring, source } => {
                write!(f, "reading ring {ring} failed: {source}")
            }
            BridgeError::StateFile { path, reason } => write!(
                f,
                "importer state file {path}: {reason}; remove it (the next importer then cannot \
                 tell what it missed before its first message) or pass another --state path"
            ),
            BridgeError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Zenoh { source, .. } => Some(source.as_ref()),
            BridgeError::OpenRing { source, .. } => Some(source),
            BridgeError::CreateRing { source, .. } => Some(source),
            BridgeError::Source { source, .. } => Some(source),
            BridgeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn zenoh_err(context: impl Into<String>) -> impl FnOnce(zenoh::Error) -> BridgeError {
    let context = context.into();
    move |source| BridgeError::Zenoh { context, source }
}
