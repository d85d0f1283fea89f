//! The broadcast payload every peer carries, the per-receiver sequence check (loss, duplicates,
//! order) and the pass rule of a broadcast step (the same for every system).
//!
//! Payload: `sender:seq:ts_us:pad` in ASCII, so it travels unescaped as Nchan's raw message body,
//! inside socket.io's `42["msg","…"]` and as a JSON string. `sender` is the broadcast step (a
//! fresh sender per step keeps the steps apart), `seq` counts from 0 within the step, `ts_us` is
//! the µs wall-clock time at the publish.

use std::collections::HashMap;

/// Latency limit of a passing step (Azure's capacity criterion,
/// `docs/performance.md#ground-rules`).
pub(crate) const P99_LIMIT_US: u64 = 1_000_000;
/// A step must publish at least this share of its target rate.
pub(crate) const MIN_RATE_SHARE: f64 = 0.95;

/// The payload of message `seq` of `sender`, stamped `ts_us`, padded with `pad`.
pub(crate) fn encode(sender: u64, seq: u64, ts_us: u64, pad: &str) -> String {
    format!("{sender}:{seq}:{ts_us}:{pad}")
}

/// `(sender, seq, ts_us)` of a payload; `None` if it is not one.
pub(crate) fn parse(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.splitn(4, ':');
    let sender = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    // The padding may be empty but its separator must be there.
    it.next()?;
    Some((sender, seq, ts))
}

/// Highest sequence number a receiver tracks (a larger one is garbage, not a reason to allocate).
const MAX_SEQ: u64 = 1 << 26;

/// The sequence numbers one receiver got from one sender.
#[derive(Debug, Default)]
struct Seen {
    /// Bit `q` set: `seq` q arrived.
    bits: Vec<u64>,
    /// Next sequence number expected in order.
    next: u64,
    duplicates: u64,
    reordered: u64,
}

impl Seen {
    fn has(&self, q: u64) -> bool {
        self.bits
            .get((q / 64) as usize)
            .is_some_and(|w| w & (1 << (q % 64)) != 0)
    }
}

/// Per-receiver check of what arrived from each sender: exactly once (a set of sequence numbers,
/// so a message that arrives late still counts as delivered) and in order (`reordered` counts the
/// messages that arrived after a later one).
#[derive(Debug, Default)]
pub(crate) struct SeqCheck {
    senders: HashMap<u64, Seen>,
    /// Messages received, duplicates included.
    pub(crate) received: u64,
    /// Messages whose sequence number was out of range.
    pub(crate) invalid: u64,
}

/// What one receiver got of one sender's messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Published and never received.
    pub(crate) lost: u64,
    /// Received more than once (every extra copy).
    pub(crate) duplicates: u64,
    /// Received after a message published later.
    pub(crate) reordered: u64,
}

impl std::ops::AddAssign for Delivery {
    fn add_assign(&mut self, o: Self) {
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
    }
}

impl SeqCheck {
    /// Accounts for message `seq` from `sender`.
    pub(crate) fn on_message(&mut self, sender: u64, seq: u64) {
        self.received += 1;
        if seq >= MAX_SEQ {
            self.invalid += 1;
            return;
        }
        let s = self.senders.entry(sender).or_default();
        if s.has(seq) {
            s.duplicates += 1;
            return;
        }
        let word = (seq / 64) as usize;
        if s.bits.len() <= word {
            s.bits.resize(word + 1, 0);
        }
        s.bits[word] |= 1 << (seq % 64);
        if seq < s.next {
            s.reordered += 1;
        } else {
            s.next = seq + 1;
        }
    }

    /// What arrived of `sender`'s messages `0..published` except the `failed` ones (publishes
    /// the server refused, which nobody should receive).
    pub(crate) fn delivery(&self, sender: u64, published: u64, failed: &[u64]) -> Delivery {
        let Some(s) = self.senders.get(&sender) else {
            return Delivery {
                lost: published - failed.iter().filter(|&&q| q < published).count() as u64,
                ..Delivery::default()
            };
        };
        let lost = (0..published)
            .filter(|q| !s.has(*q) && !failed.contains(q))
            .count() as u64;
        Delivery {
            lost,
            duplicates: s.duplicates,
            reordered: s.reordered,
        }
    }
}

/// Whether a broadcast step passed, and why not.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Verdict {
    /// The step passed.
    pub(crate) pass: bool,
    /// Why it failed (empty when it passed).
    pub(crate) reason: String,
}

fn field(r: &serde_json::Value, k: &str) -> u64 {
    r.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// The pass rule of a broadcast step, applied to a report as JSON (a `stats::Report`, from this
/// tool or from `switchboard-loadtest s4-broadcast`): every one of `connections` receivers up and
/// still up, every message delivered once and in order, no errors, p99 < 1 s, and at least 95 % of
/// `target_rate` broadcasts/s actually published.
pub(crate) fn judge(r: &serde_json::Value, connections: u64, target_rate: f64) -> Verdict {
    let mut why = Vec::new();
    let connected = field(r, "connected");
    if connected < connections {
        why.push(format!("{connected} of {connections} connected"));
    }
    for k in ["dropped", "lost", "duplicates", "errors"] {
        let v = field(r, k);
        if v > 0 {
            why.push(format!("{k} {v}"));
        }
    }
    if field(r, "sent") == 0 {
        why.push("nothing sent".to_owned());
    }
    match r
        .pointer("/latency/p99_us")
        .and_then(serde_json::Value::as_u64)
    {
        Some(p99) if p99 >= P99_LIMIT_US => why.push(format!("p99 {} ms", p99 / 1000)),
        Some(_) => {}
        None => why.push("no latency samples".to_owned()),
    }
    let rate = r
        .pointer("/extra/broadcasts_per_second")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    if rate < MIN_RATE_SHARE * target_rate {
        why.push(format!(
            "published {rate:.1}/s of {target_rate:.1}/s requested"
        ));
    }
    Verdict {
        pass: why.is_empty(),
        reason: why.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_garbage() {
        let p = encode(3, 42, 1_700_000_000_000_123, &"x".repeat(100));
        assert_eq!(parse(&p), Some((3, 42, 1_700_000_000_000_123)));
        assert_eq!(parse("0:1:2:"), Some((0, 1, 2)));
        // A colon inside the padding is part of the padding.
        assert_eq!(parse("0:1:2:a:b"), Some((0, 1, 2)));
        for bad in ["", "0:1:2", "a:1:2:x", "0:-1:2:x", "0:1:2x:", "hello"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sequence_check_counts_loss_duplicates_and_order_per_sender() {
        let mut c = SeqCheck::default();
        // Sender 0: 5 messages, all delivered in order.
        for q in 0..5 {
            c.on_message(0, q);
        }
        assert_eq!(c.delivery(0, 5, &[]), Delivery::default());
        // Sender 1: 7 published; 2 arrives twice, 1 arrives late, 4 and 6 never arrive.
        for q in [0, 2, 2, 3, 1, 5] {
            c.on_message(1, q);
        }
        assert_eq!(
            c.delivery(1, 7, &[]),
            Delivery {
                lost: 2,
                duplicates: 1,
                reordered: 1
            }
        );
        // A publish the server refused is not expected.
        assert_eq!(c.delivery(1, 7, &[4]).lost, 1);
        // Sender 2: nothing arrived.
        assert_eq!(c.delivery(2, 4, &[]).lost, 4);
        assert_eq!(c.delivery(2, 4, &[1, 9]).lost, 3);
        // The senders do not interfere.
        assert_eq!(c.delivery(0, 5, &[]), Delivery::default());
        assert_eq!(c.received, 11);
        // Garbage sequence numbers are counted, not stored.
        c.on_message(3, u64::MAX);
        assert_eq!((c.invalid, c.received), (1, 12));
        let mut total = Delivery::default();
        total += c.delivery(1, 7, &[]);
        total += c.delivery(2, 4, &[]);
        assert_eq!(total.lost, 6);
    }

    fn report(p99_us: u64, rate: f64) -> serde_json::Value {
        serde_json::json!({
            "connected": 100, "dropped": 0, "sent": 50, "lost": 0, "duplicates": 0, "errors": 0,
            "latency": { "p99_us": p99_us },
            "extra": { "broadcasts_per_second": rate },
        })
    }

    #[test]
    fn judge_applies_the_s4b_rule() {
        assert_eq!(
            judge(&report(900_000, 9.6), 100, 10.0),
            Verdict {
                pass: true,
                reason: String::new()
            }
        );
        let slow = judge(&report(1_000_000, 10.0), 100, 10.0);
        assert!(
            !slow.pass && slow.reason.contains("p99 1000 ms"),
            "{slow:?}"
        );
        let behind = judge(&report(10_000, 9.0), 100, 10.0);
        assert!(
            !behind.pass && behind.reason.contains("published"),
            "{behind:?}"
        );
        let mut lossy = report(10_000, 10.0);
        lossy["lost"] = 3.into();
        lossy["connected"] = 99.into();
        let v = judge(&lossy, 100, 10.0);
        assert!(!v.pass, "{v:?}");
        assert!(v.reason.contains("lost 3") && v.reason.contains("99 of 100"));
        let mut empty = report(10_000, 10.0);
        empty["latency"] = serde_json::Value::Null;
        assert!(judge(&empty, 100, 10.0).reason.contains("no latency"));
    }
}
