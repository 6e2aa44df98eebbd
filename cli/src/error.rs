//! Failures of a command: what reaches standard error, and the exit status.

use crate::target::Target;
use shmcast::OpenError;
use std::io;

/// Exit status of a command that failed.
pub(crate) const EXIT_ERROR: u8 = 1;

/// Why a command stopped early.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An error: its message (and a hint, the tool's way out) go to standard error.
    Error {
        message: String,
        hint: Option<String>,
    },
    /// Errors already reported one by one (`rm` of several names).
    Reported,
    /// The reader of standard output went away (`shmcast tail x | head`): stop quietly.
    Closed,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure::Error {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure::Error {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// Print the failure to standard error.
    pub(crate) fn report(&self) {
        if let Failure::Error { message, hint } = self {
            eprintln!("shmcast: {message}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
    }
}

/// A failed write to standard output.
pub(crate) fn output(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::new(format!("write to standard output: {e}"))
    }
}

/// What a command opens a segment for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Inspection: read-only, any owner.
    Inspect,
    /// Attaching a consumer: read and write.
    Attach,
}

/// Opening `target` failed: the core's text, prefixed with the segment unless it names it,
/// and the tool's hint where there is one.
pub(crate) fn open(target: &Target, e: &OpenError, access: Access) -> Failure {
    let what = target.describe();
    let text = e.to_string();
    let message = if text.contains(&what)
        || matches!(e, OpenError::InvalidName { .. } | OpenError::NotFound(_))
    {
        text
    } else {
        format!("{what}: {text}")
    };
    let hint = match e {
        OpenError::ForeignOwner { .. } => {
            Some("pass --allow-foreign-owner to attach to it anyway".to_string())
        }
        OpenError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            Some(match access {
                Access::Inspect => "inspecting a segment needs read access to it".to_string(),
                Access::Attach => "a consumer needs read and write access to the segment: \
                                   check its mode and group (`ls -l /dev/shm`)"
                    .to_string(),
            })
        }
        OpenError::NotFound(_) if access == Access::Attach => {
            Some("pass --wait SECS to wait for its producer to create it".to_string())
        }
        _ => None,
    };
    Failure::Error { message, hint }
}
