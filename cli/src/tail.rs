//! `shmcast tail`: attach as a lossy consumer (it never gates the producer), print each
//! message as `SEQ PAYLOAD`, and a `# lagged: N messages lost` line where the producer
//! lapped us. Ends after `-n` messages, when the stream closes, or on Ctrl-C; output is
//! flushed whenever no message is waiting, so it is prompt when idle and batched when busy.

use crate::args::{Format, TailArgs};
use crate::error::{self, Access, Failure};
use crate::out::Out;
use crate::signals;
use crate::target::Target;
use shmcast::{Consumer, LossyConsumer, OpenError, RecvTimeoutError, StartAt, TryRecvError};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Longest wait for a message between two checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

pub(crate) fn run(args: &TailArgs) -> Result<(), Failure> {
    let target = Target::parse(&args.segment);
    signals::catch_stop().map_err(|e| Failure::new(format!("install the Ctrl-C handler: {e}")))?;
    target.check_file_type()?;
    let Some(mut consumer) = attach(&target, args)? else {
        return Ok(()); // Ctrl-C while waiting for the segment
    };
    let mut out = Out::new();
    let mut payload = Vec::new();
    let mut line = String::new();
    let mut printed = 0u64;
    while !signals::stop_requested() {
        let received = match consumer.try_recv_into(&mut payload) {
            Err(TryRecvError::Empty) => {
                // Nothing waiting: show what we have before blocking.
                out.flush()?;
                consumer.recv_timeout_into(&mut payload, POLL)
            }
            other => other.map_err(RecvTimeoutError::from),
        };
        match received {
            Ok(seq) => {
                line.clear();
                format_message(&mut line, seq, &payload, args.format);
                out.put(&line)?;
                printed += 1;
                if Some(printed) == args.count {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Lagged(n)) => {
                out.put(&format!("# lagged: {n} messages lost\n"))?;
            }
            Err(RecvTimeoutError::Disconnected) => {
                out.flush()?;
                eprintln!("shmcast: the producer closed the stream");
                break;
            }
            Err(e) => {
                out.flush()?;
                return Err(Failure::new(format!("{}: {e}", target.describe())));
            }
        }
    }
    out.flush()?;
    drop(consumer); // frees the slot
    Ok(())
}

/// Attach a lossy consumer, waiting for the segment up to `--wait` (in steps, to notice
/// Ctrl-C); `None` if the user stopped the wait.
fn attach(target: &Target, args: &TailArgs) -> Result<Option<LossyConsumer>, Failure> {
    let builder = Consumer::builder()
        .start_at(if args.oldest {
            StartAt::Oldest
        } else {
            StartAt::Next
        })
        .allow_foreign_owner(args.allow_foreign_owner);
    let deadline = args.wait.map(|w| Instant::now() + w);
    loop {
        let step = deadline.map(|d| d.saturating_duration_since(Instant::now()).min(POLL));
        let options = match step {
            Some(step) => builder.clone().wait_for_segment(step),
            None => builder.clone(),
        };
        let attached = match target {
            Target::Name(n) => options.lossy().open(n),
            Target::Path(p) => options.lossy().open_path(p),
        };
        match attached {
            Ok(c) => return Ok(Some(c)),
            // Not there yet, or still being initialized: the core waited one step.
            Err(e) if e.not_there_yet() && deadline.is_some_and(|d| Instant::now() < d) => {
                if signals::stop_requested() {
                    return Ok(None);
                }
            }
            Err(e) => {
                let mut failure = error::open(target, &e, Access::Attach);
                if let (Some(wait), Failure::Error { hint, .. }) = (args.wait, &mut failure) {
                    if matches!(e, OpenError::NotFound(_)) {
                        *hint = Some(format!("waited {wait:?} for it"));
                    }
                }
                return Err(failure);
            }
        }
    }
}

/// Append `SEQ PAYLOAD\n` to `line`, the payload as `format` says.
pub(crate) fn format_message(line: &mut String, seq: u64, payload: &[u8], format: Format) {
    let _ = write!(line, "{seq} ");
    match format {
        Format::Len => {
            let _ = write!(line, "{}", payload.len());
        }
        Format::Hex => {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            line.reserve(payload.len() * 2);
            for b in payload {
                line.push(DIGITS[usize::from(b >> 4)] as char);
                line.push(DIGITS[usize::from(b & 0xf)] as char);
            }
        }
        Format::Utf8 => escape_utf8(line, payload),
    }
    line.push('\n');
}

/// The payload as text on one line: `\` as `\\`, newline, return and tab as `\n`, `\r`,
/// `\t`, other control characters as `\u{..}`, bytes that are not UTF-8 as `\xNN`.
fn escape_utf8(line: &mut String, payload: &[u8]) {
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => line.push_str("\\\\"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                '\t' => line.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(line, "\\u{{{:x}}}", u32::from(c));
                }
                c => line.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(line, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(seq: u64, payload: &[u8], format: Format) -> String {
        let mut s = String::new();
        format_message(&mut s, seq, payload, format);
        s
    }

    #[test]
    fn each_format_prints_the_sequence_number_then_the_payload() {
        assert_eq!(formatted(7, b"hello", Format::Utf8), "7 hello\n");
        assert_eq!(formatted(7, b"hello", Format::Hex), "7 68656c6c6f\n");
        assert_eq!(formatted(7, b"hello", Format::Len), "7 5\n");
        assert_eq!(formatted(0, b"", Format::Utf8), "0 \n");
        assert_eq!(formatted(0, b"", Format::Hex), "0 \n");
        assert_eq!(formatted(0, b"", Format::Len), "0 0\n");
        assert_eq!(formatted(1, &[0, 0xff, 0x10], Format::Hex), "1 00ff10\n");
    }

    #[test]
    fn text_stays_on_one_line_and_escapes_are_unambiguous() {
        assert_eq!(
            formatted(1, b"a\nb\r\tc\\d\x00\x7f", Format::Utf8),
            "1 a\\nb\\r\\tc\\\\d\\u{0}\\u{7f}\n"
        );
        assert_eq!(
            formatted(2, "héllo ☃".as_bytes(), Format::Utf8),
            "2 héllo ☃\n"
        );
        assert_eq!(
            formatted(3, b"ok\xff\xfeend\xe2\x98", Format::Utf8),
            "3 ok\\xff\\xfeend\\xe2\\x98\n"
        );
    }
}
