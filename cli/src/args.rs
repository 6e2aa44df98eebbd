//! The command line: subcommands and their options.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// Inspect and watch shmcast shared-memory rings.
#[derive(Debug, Parser)]
#[command(
    name = "shmcast",
    version,
    about = "Inspect and watch shmcast shared-memory rings",
    long_about = "Inspect and watch shmcast shared-memory rings.\n\n\
        SEGMENT is a segment name as given to the producer (`ticks` for /dev/shm/ticks), \
        or the path of a file-backed segment if it contains a '/'.\n\n\
        Exit status: 0 on success (also when `tail` or `top` is stopped with Ctrl-C), \
        1 on an error, 2 on a usage error."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the shmcast segments in /dev/shm with their producer and consumers.
    List(ListArgs),
    /// Show a segment: geometry, producer, and every consumer with its lag and liveness.
    Stat(StatArgs),
    /// Watch a segment: message and byte rates, and every consumer's lag, refreshed.
    Top(TopArgs),
    /// Print messages as they are sent, as a lossy consumer that never slows the producer.
    Tail(TailArgs),
    /// Remove segments whose producer is gone.
    Rm(RmArgs),
}

/// `shmcast list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Also list the objects in /dev/shm that are not shmcast segments, and why.
    #[arg(long)]
    pub(crate) all: bool,
    /// Print JSON (see the README for its fields).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `shmcast stat`.
#[derive(Debug, Args)]
pub(crate) struct StatArgs {
    /// Segment name, or path of a file-backed segment (if it contains a '/').
    #[arg(value_name = "SEGMENT")]
    pub(crate) segment: String,
    /// Print JSON (see the README for its fields).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `shmcast top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Segment name, or path of a file-backed segment (if it contains a '/').
    #[arg(value_name = "SEGMENT")]
    pub(crate) segment: String,
    /// Seconds between refreshes (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub(crate) interval: Duration,
    /// Stop after printing this many frames; the first is printed at once, without rates
    /// (default: run until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) iterations: Option<u64>,
}

/// `shmcast tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Segment name, or path of a file-backed segment (if it contains a '/').
    #[arg(value_name = "SEGMENT")]
    pub(crate) segment: String,
    /// Exit after printing this many messages (default: until the stream closes or Ctrl-C).
    #[arg(short = 'n', long = "count", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// How to print each payload.
    #[arg(long, value_enum, default_value_t = Format::Utf8)]
    pub(crate) format: Format,
    /// Start at the oldest message still in the ring instead of the next one sent.
    #[arg(long)]
    pub(crate) oldest: bool,
    /// Wait up to this many seconds for the segment to be created.
    #[arg(long, value_name = "SECS", value_parser = parse_wait)]
    pub(crate) wait: Option<Duration>,
    /// Attach to a segment owned by another user (it must still grant us read and write
    /// access).
    #[arg(long)]
    pub(crate) allow_foreign_owner: bool,
}

/// How `tail` prints a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// As text: invalid UTF-8 bytes as \xNN, control characters and '\' escaped.
    Utf8,
    /// As lowercase hexadecimal.
    Hex,
    /// Only its length in bytes.
    Len,
}

/// `shmcast rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Segment names.
    #[arg(value_name = "NAME", required = true)]
    pub(crate) names: Vec<String>,
    /// Remove whatever the names refer to, even a segment whose producer is alive or an
    /// object that is not a shmcast segment.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Seconds as a duration: finite, positive, at most a day.
fn parse_seconds(s: &str, min: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || secs < min || secs > 86_400.0 {
        return Err(format!("{s} is out of range ({min} to 86400 seconds)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_seconds(s, 0.01)
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    parse_seconds(s, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_parsed_and_bounded() {
        assert_eq!(parse_interval("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        for bad in ["0", "-1", "nan", "inf", "1e9", "soon"] {
            assert!(parse_interval(bad).is_err(), "{bad} accepted");
        }
    }
}
