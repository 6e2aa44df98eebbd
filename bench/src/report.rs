//! The tables `pingpong` and `ipc_report` share: round trips and one-way throughput, every
//! row as ratios to the floor and to ringfire measured in the same run.

use super::measure::{self, Opts, RtFigure, RtPlan, StreamRun};
use super::table::{Cell, Fmt, Table};
use super::transport::Kind;
use std::time::Duration;

/// Round-trip figures of every kind (a failed kind keeps its error).
pub type RtResults = Vec<(Kind, Result<RtFigure, String>)>;

/// Measure round trips of `kinds` for one size, interleaved (see
/// [`measure::round_trips`]), telling `progress` (unless `quiet`) what runs.
pub fn round_trips(kinds: &[Kind], plan: &RtPlan, opts: &Opts, quiet: bool) -> RtResults {
    measure::round_trips(kinds, plan, opts, &mut |k, r| {
        progress(
            quiet,
            format_args!(
                "round trip {} B, round {}/{}: {}",
                plan.size,
                r + 1,
                plan.rounds,
                k.name()
            ),
        )
    })
}

/// Overwrite the progress line on standard error (nothing if `quiet` or if standard error
/// is not a terminal).
pub fn progress(quiet: bool, what: std::fmt::Arguments<'_>) {
    use std::io::IsTerminal;
    if !quiet && std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K{what}");
    }
}

fn find(figs: &RtResults, k: Kind) -> Option<&RtFigure> {
    figs.iter()
        .find(|(kind, _)| *kind == k)
        .and_then(|(_, f)| f.as_ref().ok())
}

/// The figure of `k` over that of `base` (median of per-round ratios), if both ran.
pub fn rt_ratio(figs: &RtResults, k: Kind, base: Kind) -> Option<f64> {
    Some(find(figs, k)?.ratio_to(find(figs, base)?))
}

/// The round-trip table for `size`-byte messages.
pub fn rt_table(size: usize, rounds: u64, timer_ns: f64, figs: &RtResults) -> Table {
    let mut t = Table::new(
        format!("Round trip, {size} B"),
        format!(
            "Parent sends, child echoes, both busy-polling unless the transport blocks. \
             p50..max: each round trip timed alone (includes one clock read, ~{timer_ns:.0} ns), \
             exact percentiles of every sample. batched p50: median over batches of 64 round \
             trips of the mean, nearly clock-free. Ratios: median over {rounds} interleaved \
             rounds of the per-round ratio of batched p50s (÷ floor: the floor is two \
             processes bouncing one shared atomic; ÷ ringfire: ringfire lossless busy-spin)."
        ),
        &[
            ("transport", "transport"),
            ("p50", "p50_ns"),
            ("p99", "p99_ns"),
            ("p99.9", "p999_ns"),
            ("max", "max_ns"),
            ("batched p50", "batched_p50_ns"),
            ("÷ floor", "ratio_to_floor"),
            ("÷ ringfire", "ratio_to_ringfire"),
            ("samples", "samples"),
        ],
    );
    let vs = |f: &RtFigure, base: Kind| match find(figs, base) {
        Some(b) => Cell::Num(f.ratio_to(b), Fmt::Ratio),
        None => Cell::Na(String::new()),
    };
    for (kind, f) in figs {
        match f {
            Ok(f) => t.row(vec![
                Cell::text(kind.name()),
                Cell::Num(f.p50 as f64, Fmt::Ns),
                Cell::Num(f.p99 as f64, Fmt::Ns),
                Cell::Num(f.p999 as f64, Fmt::Ns),
                Cell::Num(f.max as f64, Fmt::Ns),
                Cell::Num(f.batched_p50 as f64, Fmt::Ns),
                vs(f, Kind::Floor),
                vs(f, Kind::Ringfire),
                Cell::Num(f.samples as f64, Fmt::Plain(0)),
            ]),
            Err(e) => {
                let mut row = vec![Cell::text(kind.name()), Cell::Na(e.clone())];
                row.extend((0..7).map(|_| Cell::Na(String::new())));
                t.row(row);
            }
        }
    }
    t
}

/// One throughput row: a kind, its batch size, one run per round (or its error).
#[derive(Clone, Debug)]
pub struct TputRow {
    /// What the row is called.
    pub label: String,
    /// The transport.
    pub kind: Kind,
    /// Messages per batch call (1: one by one).
    pub batch: usize,
    /// One run per round.
    pub runs: Result<Vec<StreamRun>, String>,
}

/// The rows to stream for `kinds`: each streaming kind one by one, and with its batch API
/// in batches of `batch` where it has one.
pub fn tput_plan(kinds: &[Kind], batch: usize) -> Vec<(Kind, usize)> {
    let mut plan = Vec::new();
    for &k in kinds.iter().filter(|k| k.streams()) {
        plan.push((k, 1));
        if k.batches() && batch > 1 {
            plan.push((k, batch));
        }
    }
    plan
}

/// Measure the `plan` rows for `size`-byte messages, interleaved in `rounds`.
pub fn throughputs(
    plan: &[(Kind, usize)],
    size: usize,
    target: Duration,
    rounds: u64,
    opts: &Opts,
    quiet: bool,
) -> Vec<TputRow> {
    let label = |(kind, batch): (Kind, usize)| {
        if batch > 1 {
            format!("{} batch {batch}", kind.name())
        } else {
            kind.name().to_string()
        }
    };
    let results = measure::throughputs(plan, size, target, rounds, opts, &mut |i, r| {
        progress(
            quiet,
            format_args!(
                "throughput {size} B, round {}/{rounds}: {}",
                r + 1,
                label(plan[i])
            ),
        )
    });
    plan.iter()
        .zip(results)
        .map(|(&(kind, batch), runs)| TputRow {
            label: label((kind, batch)),
            kind,
            batch,
            runs,
        })
        .collect()
}

/// The runs of the row for `kind` in batches of `batch`.
pub fn tput_runs(rows: &[TputRow], kind: Kind, batch: usize) -> Option<&[StreamRun]> {
    rows.iter()
        .find(|r| r.kind == kind && r.batch == batch)
        .and_then(|r| r.runs.as_deref().ok())
}

/// The one-way throughput table for `size`-byte messages; `memcpy` (bytes/s) adds a
/// reference row and column.
pub fn tput_table(size: usize, rounds: u64, rows: &[TputRow], memcpy: Option<f64>) -> Table {
    let mut cols = vec![
        ("transport", "transport"),
        ("messages/s", "msgs_per_s"),
        ("bytes/s", "bytes_per_s"),
        ("÷ stream-floor", "ratio_to_stream_floor"),
        ("÷ ringfire", "ratio_to_ringfire"),
    ];
    if memcpy.is_some() {
        cols.push(("÷ memcpy", "ratio_to_memcpy"));
    }
    cols.push(("wake syscalls/msg", "wake_syscalls_per_msg"));
    let mut t = Table::new(
        format!("One-way throughput, {size} B"),
        format!(
            "Back-to-back sends to one consumer process, rate to its receipt of the last \
             message; median of {rounds} interleaved rounds (a fresh consumer each). Ratios: \
             median of per-round ratios. ÷ stream-floor: the SPSC floor (what the hardware \
             streams); ÷ ringfire: ringfire lossless with the same batch size (single if it \
             has none). shmcast and iceoryx2 consumers read in place, ringfire copies each \
             message out (its API), the others read into their own buffer."
        ),
        &cols,
    );
    let floor = tput_runs(rows, Kind::StreamFloor, 1);
    for r in rows {
        let runs = match &r.runs {
            Ok(runs) => runs,
            Err(e) => {
                let mut row = vec![Cell::text(r.label.clone()), Cell::Na(e.clone())];
                row.extend((2..cols.len()).map(|_| Cell::Na(String::new())));
                t.row(row);
                continue;
            }
        };
        let rate = measure::median_rate(runs);
        let vs = |base: Option<&[StreamRun]>| match base {
            Some(b) => Cell::Num(measure::median_rate_ratio(runs, b), Fmt::Ratio),
            None => Cell::Na(String::new()),
        };
        let ringfire =
            tput_runs(rows, Kind::Ringfire, r.batch).or(tput_runs(rows, Kind::Ringfire, 1));
        let mut row = vec![
            Cell::text(r.label.clone()),
            Cell::Num(rate, Fmt::Rate),
            Cell::Num(rate * size as f64, Fmt::Bandwidth),
            vs(floor),
            vs(ringfire),
        ];
        if let Some(m) = memcpy {
            row.push(Cell::Num(rate * size as f64 / m, Fmt::Ratio));
        }
        row.push(
            measure::wakes_per_msg(runs)
                .map_or(Cell::Na(String::new()), |w| Cell::Num(w, Fmt::Plain(4))),
        );
        t.row(row);
    }
    if let Some(m) = memcpy {
        let mut row = vec![
            Cell::text("memcpy (1 process)"),
            Cell::Num(m / size as f64, Fmt::Rate),
            Cell::Num(m, Fmt::Bandwidth),
            Cell::Na(String::new()),
            Cell::Na(String::new()),
            Cell::Num(1.0, Fmt::Ratio),
            Cell::Na(String::new()),
        ];
        row.truncate(cols.len());
        t.row(row);
    }
    t
}
