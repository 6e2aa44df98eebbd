#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod error;
mod list;
mod out;
mod rm;
mod signals;
mod stat;
mod tail;
mod target;
mod top;

use std::process::ExitCode;

/// Run the `shmcast` tool on the process's arguments and return its exit code: 0 on
/// success (and when `tail` or `top` is stopped with Ctrl-C, or the reader of its output
/// goes away), 1 on an error (its text on standard error), 2 on a usage error.
pub fn run() -> ExitCode {
    use clap::Parser;
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    // A segment truncated by another process while it is mapped turns our next access into
    // SIGBUS: say so instead of dying silently.
    signals::report_bus_errors();
    let result = match cli.command {
        args::Command::List(a) => list::run(&a),
        args::Command::Stat(a) => stat::run(&a),
        args::Command::Top(a) => top::run(&a),
        args::Command::Tail(a) => tail::run(&a),
        args::Command::Rm(a) => rm::run(&a),
    };
    match result {
        Ok(()) | Err(error::Failure::Closed) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::from(error::EXIT_ERROR)
        }
    }
}
