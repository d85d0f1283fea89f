//! When a hub writes a fan-out straight to its connections' sockets (see
//! [`crate::peer::outbox`]'s direct writes) and when it queues instead.
//!
//! A direct write costs the hub's own thread a system call per recipient, one after the other;
//! queued, the same fan-out costs the hub a push per recipient and the connections' tasks do the
//! writes, on every worker thread and coalescing what arrives meanwhile. Direct is cheaper in
//! all (no task woken) and reaches an idle audience sooner while each write carries one message;
//! queued scales with load, because once messages come faster than a connection writes them,
//! one write carries several (and on loopback each write also pays the receiving side's TCP
//! processing). So a hub writes directly only while it is not under load:
//!
//! - its inbox holds nothing more, and has held nothing more at every command for [`CALM`]
//!   (a command that arrived while another waited means fan-outs come faster than one is
//!   written: the hub queues, and coalescing takes over, until it is calm again);
//! - direct writing has taken at most [`SHARE`] of its time lately (a token bucket of time,
//!   refilled at that share of the wall clock, at most [`BURST`] ahead): it never spends its
//!   whole thread on writes.

use std::time::Duration;

use tokio::time::Instant;

/// The most of a hub's time spent writing directly, over time.
pub(super) const SHARE: f64 = 0.5;
/// How much direct-writing time may be spent at once after a quiet spell.
pub(super) const BURST: Duration = Duration::from_millis(200);
/// How long the inbox must have held no backlog before the hub writes directly again.
pub(super) const CALM: Duration = Duration::from_secs(1);

/// The hub's allowance of direct-writing time.
#[derive(Debug)]
pub(super) struct DirectBudget {
    /// Time left to spend; below zero after a fan-out that took more than was left.
    left_us: i64,
    refilled: Instant,
    /// The last command that found another waiting behind it.
    backlog_at: Option<Instant>,
}

impl DirectBudget {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            left_us: BURST.as_micros() as i64,
            refilled: now,
            backlog_at: None,
        }
    }

    /// Whether a command handled `now`, with `backlog` (another command waiting behind it),
    /// may write its fan-out directly.
    pub(super) fn allows(&mut self, now: Instant, backlog: bool) -> bool {
        if backlog {
            self.backlog_at = Some(now);
            return false;
        }
        if self
            .backlog_at
            .is_some_and(|at| now.saturating_duration_since(at) < CALM)
        {
            return false;
        }
        let earned = now.saturating_duration_since(self.refilled).as_micros() as f64 * SHARE;
        self.left_us = (self.left_us + earned as i64).min(BURST.as_micros() as i64);
        self.refilled = now;
        self.left_us > 0
    }

    /// A direct fan-out took `took`.
    pub(super) fn spend(&mut self, took: Duration) {
        self.left_us -= took.as_micros().min(i64::MAX as u128) as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_quiet_hub_writes_directly_a_busy_one_queues_until_it_has_earned_it_back() {
        let t0 = Instant::now();
        let mut b = DirectBudget::new(t0);
        assert!(b.allows(t0, false));
        // 10 broadcasts a second of 45 ms each: under half the time, direct all along.
        let mut t = t0;
        for _ in 0..50 {
            assert!(b.allows(t, false));
            b.spend(45 * MS);
            t += 100 * MS;
        }
        // 25 a second of 45 ms each would take the whole thread: after the burst allowance
        // runs out, at most half of them go direct.
        let (mut direct, mut all) = (0, 0);
        for _ in 0..250 {
            all += 1;
            if b.allows(t, false) {
                direct += 1;
                b.spend(45 * MS);
            }
            t += 40 * MS;
        }
        assert!(direct < all, "some fan-outs queue");
        let spent = direct as f64 * 45.0;
        let elapsed = all as f64 * 40.0;
        assert!(
            spent <= elapsed * SHARE + BURST.as_millis() as f64 + 45.0,
            "{direct} of {all} direct: {spent} ms of {elapsed} ms"
        );
        assert!(
            direct * 3 >= all,
            "and the rest of the share is still used: {direct} of {all}"
        );
        // A quiet spell earns back at most the burst allowance.
        t += Duration::from_secs(60);
        assert!(b.allows(t, false));
        b.spend(BURST);
        assert!(!b.allows(t, false), "the burst is spent");
        assert!(b.allows(t + 2 * MS, false));
    }

    #[test]
    fn a_backlog_sends_the_hub_to_queueing_until_it_has_been_calm_for_a_while() {
        let t0 = Instant::now();
        let mut b = DirectBudget::new(t0);
        assert!(b.allows(t0, false));
        assert!(!b.allows(t0 + MS, true), "another command is waiting");
        assert!(!b.allows(t0 + 2 * MS, false), "just after a backlog");
        assert!(
            !b.allows(t0 + CALM, true),
            "a backlog again restarts the wait"
        );
        assert!(!b.allows(t0 + CALM + CALM / 2, false));
        assert!(b.allows(t0 + CALM * 2 + MS, false), "calm for CALM");
    }

    #[test]
    fn a_fan_out_longer_than_what_was_left_is_paid_back_before_the_next() {
        let t0 = Instant::now();
        let mut b = DirectBudget::new(t0);
        assert!(b.allows(t0, false));
        b.spend(Duration::from_secs(1));
        // 800 ms in debt: 1.6 s of wall time at half share.
        assert!(!b.allows(t0 + Duration::from_millis(1500), false));
        assert!(b.allows(t0 + Duration::from_millis(1700), false));
    }
}
