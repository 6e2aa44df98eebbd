//! `shmcast stat`: one snapshot, as aligned text or as JSON.

use crate::args::StatArgs;
use crate::error::Failure;
use crate::out::{self, Align, Out, Table};
use crate::target::Target;
use serde_json::{json, Value};
use shmcast::{ProducerState, SlotInfo, SlotKind, Snapshot};

/// Version of the JSON documents (`stat`, `list`): bumped when a field changes meaning or
/// goes away; new fields may appear without a bump.
pub(crate) const JSON_VERSION: u32 = 1;

pub(crate) fn run(args: &StatArgs) -> Result<(), Failure> {
    let target = Target::parse(&args.segment);
    let snap = target.inspect()?;
    let mut out = Out::new();
    if args.json {
        let doc = json_document(&target, &snap);
        out.put(&serde_json::to_string_pretty(&doc).expect("a JSON value serializes"))?;
        out.put("\n")?;
    } else {
        out.put(&human(&target, &snap))?;
    }
    out.flush()
}

/// The producer state as JSON and tables spell it.
pub(crate) fn producer_state(s: ProducerState) -> &'static str {
    match s {
        ProducerState::Live => "live",
        ProducerState::Closed => "closed",
        ProducerState::Died => "died",
        ProducerState::None => "none",
        _ => "unknown",
    }
}

/// A slot kind as JSON spells it.
pub(crate) fn slot_kind(k: SlotKind) -> &'static str {
    match k {
        SlotKind::Lossless => "lossless",
        SlotKind::LosslessCopying => "lossless-copying",
        SlotKind::Lossy => "lossy",
        SlotKind::Evicted => "evicted",
        _ => "unknown",
    }
}

/// A slot kind for tables: as JSON spells it, with the raw value of an unknown one.
fn slot_kind_human(k: SlotKind) -> String {
    match k {
        SlotKind::Unknown(v) => format!("unknown({v})"),
        k => slot_kind(k).to_string(),
    }
}

/// Alive and dead consumer slots.
pub(crate) fn consumer_counts(snap: &Snapshot) -> (usize, usize) {
    let alive = snap.consumers.iter().filter(|c| c.alive).count();
    (alive, snap.consumers.len() - alive)
}

/// "4242", or "-" where no producer ever recorded its pid.
pub(crate) fn pid(p: u32) -> String {
    if p == 0 {
        "-".to_string()
    } else {
        p.to_string()
    }
}

fn slot_json(c: &SlotInfo) -> Value {
    json!({
        "index": c.index,
        "kind": slot_kind(c.kind),
        "pid": c.pid,
        "alive": c.alive,
        "cursor": c.cursor,
        "lag_bytes": c.lag_bytes,
        "lag_messages": c.lag_messages,
        "gating": c.gating,
    })
}

/// The `stat --json` document (fields documented in the README).
pub(crate) fn json_document(target: &Target, snap: &Snapshot) -> Value {
    let (name, path) = match target {
        Target::Name(n) => (Some(n.clone()), None),
        Target::Path(p) => (None, Some(p.display().to_string())),
    };
    let (alive, dead) = consumer_counts(snap);
    let p = &snap.producer;
    json!({
        "version": JSON_VERSION,
        "name": name,
        "path": path,
        "segment_size": snap.segment_size,
        "capacity": snap.capacity,
        "max_message": snap.max_message,
        "max_consumers": snap.max_consumers,
        "producer": {
            "state": producer_state(p.state),
            "pid": p.pid,
            "tail": p.tail,
            "next_seq": p.next_seq,
            "claim": p.claim,
            "epoch": p.epoch,
            "evicting": p.evicting,
        },
        "consumers_alive": alive,
        "consumers_dead": dead,
        "gating": snap.consumers.iter().filter(|c| c.gating).map(|c| c.index).collect::<Vec<_>>(),
        "consumers": snap.consumers.iter().map(slot_json).collect::<Vec<_>>(),
    })
}

/// The lines above a consumer table: geometry, producer, consumer summary.
pub(crate) fn summary(target: &Target, snap: &Snapshot) -> String {
    let p = &snap.producer;
    let producer = match p.state {
        ProducerState::None => "none (no producer has attached yet)".to_string(),
        state => format!(
            "{}, pid {}, epoch {}{}",
            producer_state(state),
            pid(p.pid),
            p.epoch,
            if p.evicting {
                ", evicts stuck consumers"
            } else {
                ""
            }
        ),
    };
    let (alive, dead) = consumer_counts(snap);
    let gating: Vec<String> = snap
        .consumers
        .iter()
        .filter(|c| c.gating)
        .map(|c| format!("slot {} (pid {})", c.index, pid(c.pid)))
        .collect();
    let gating = match gating.len() {
        0 => "none gates the producer".to_string(),
        1 => format!("{} gates the producer", gating[0]),
        _ => format!("{} gate the producer", gating.join(" and ")),
    };
    format!(
        "segment    {}\n\
         size       {} ({} bytes): ring {}, max message {} bytes, {} consumer slots\n\
         producer   {producer}\n\
         stream     next seq {}, tail {}, claim {}\n\
         consumers  {} attached ({alive} alive, {dead} dead); {gating}\n",
        target.describe(),
        out::bytes(snap.segment_size),
        snap.segment_size,
        out::bytes(snap.capacity),
        snap.max_message,
        snap.max_consumers,
        p.next_seq,
        p.tail,
        p.claim,
        snap.consumers.len(),
    )
}

/// Lag in messages, "?" where it is unknown (a lapped lossy consumer).
pub(crate) fn lag_messages(c: &SlotInfo) -> String {
    c.lag_messages.map_or("?".to_string(), |m| m.to_string())
}

pub(crate) fn alive(c: &SlotInfo) -> &'static str {
    if c.alive {
        "alive"
    } else {
        "dead"
    }
}

pub(crate) fn gating(c: &SlotInfo) -> &'static str {
    if c.gating {
        "yes"
    } else {
        ""
    }
}

fn human(target: &Target, snap: &Snapshot) -> String {
    let mut s = summary(target, snap);
    if !snap.consumers.is_empty() {
        let mut t = Table::new(&[
            ("SLOT", Align::Right),
            ("KIND", Align::Left),
            ("PID", Align::Right),
            ("STATE", Align::Left),
            ("CURSOR", Align::Right),
            ("LAG BYTES", Align::Right),
            ("LAG MSGS", Align::Right),
            ("GATING", Align::Left),
        ]);
        for c in &snap.consumers {
            t.row(vec![
                c.index.to_string(),
                slot_kind_human(c.kind),
                pid(c.pid),
                alive(c).to_string(),
                c.cursor.to_string(),
                c.lag_bytes.to_string(),
                lag_messages(c),
                gating(c).to_string(),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    s
}
