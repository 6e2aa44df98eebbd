//! `shmcast rm`: remove named segments whose producer is gone, or anything with `--force`.

use crate::args::RmArgs;
use crate::error::Failure;
use crate::out::Out;
use crate::target::Target;
use shmcast::{ProducerState, RemoveError};
use std::io;

pub(crate) fn run(args: &RmArgs) -> Result<(), Failure> {
    let mut out = Out::new();
    let mut failed = 0;
    for name in &args.names {
        let result = if args.force {
            remove_by_force(name)
        } else {
            remove(name)
        };
        match result {
            Ok(message) => {
                out.put(&message)?;
                out.put("\n")?;
            }
            Err(failure) => {
                // Say what was done so far before the error, in order.
                out.flush()?;
                failure.report();
                failed += 1;
            }
        }
    }
    out.flush()?;
    match failed {
        0 => Ok(()),
        _ if args.names.len() == 1 => Err(Failure::Reported),
        n => Err(Failure::new(format!(
            "{n} of {} segments were not removed",
            args.names.len()
        ))),
    }
}

/// Only names: the core removes a segment only by name, checking that the object it
/// checked is the one it unlinks.
fn name_of(arg: &str) -> Result<&str, Failure> {
    match Target::parse(arg) {
        Target::Name(_) => Ok(arg),
        Target::Path(p) => Err(Failure::with_hint(
            format!("'{}' is a path; rm takes segment names", p.display()),
            "for a file-backed segment, check with `shmcast stat PATH` that its producer \
             is gone, then remove the file",
        )),
    }
}

fn remove(arg: &str) -> Result<String, Failure> {
    let name = name_of(arg)?;
    let target = Target::Name(name.to_string());
    if let Err(failure) = target.check_file_type() {
        return Err(match (failure, target.file_kind()) {
            // Neither rm nor rm --force removes a directory.
            (f, Some("a directory")) => f,
            (Failure::Error { message, .. }, _) => {
                Failure::with_hint(message, format!("`shmcast rm --force {name}` removes it"))
            }
            (f, _) => f,
        });
    }
    match shmcast::remove(name) {
        Ok(()) => Ok(format!("removed '{name}'")),
        Err(e @ RemoveError::ProducerAlive { pid, .. }) => Err(Failure::with_hint(
            e.to_string(),
            format!(
                "`shmcast rm --force {name}` removes the name anyway; producer {pid} then \
                 keeps writing into a segment that new consumers cannot open"
            ),
        )),
        Err(e @ RemoveError::Segment { .. }) => Err(Failure::with_hint(
            e.to_string(),
            format!("`shmcast rm --force {name}` removes it"),
        )),
        Err(e) => Err(Failure::new(e.to_string())),
    }
}

fn remove_by_force(arg: &str) -> Result<String, Failure> {
    let name = name_of(arg)?;
    let target = Target::Name(name.to_string());
    // Informational: what is being removed (nothing is opened that is not a regular file).
    let live = match target.inspect() {
        Ok(snap) if snap.producer.state == ProducerState::Live => Some(snap.producer.pid),
        _ => None,
    };
    match shmcast::force_remove(name) {
        Ok(()) => {
            if let Some(pid) = live {
                eprintln!(
                    "shmcast: warning: the producer of '{name}' (pid {pid}) is alive: it keeps \
                     writing into the removed segment, which new consumers cannot open"
                );
            }
            Ok(format!("removed '{name}'"))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Failure::new(format!("segment '{name}' does not exist")))
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            Err(Failure::new(format!("invalid segment name {name:?}: {e}")))
        }
        Err(e) => Err(Failure::new(format!("remove '{name}': {e}"))),
    }
}
