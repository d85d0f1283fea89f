//! When a run has failed, and stopping it early.
//!
//! A run **fails** (the binary exits 1, the report's `failure` says why) when:
//!
//! 1. **no connection came up**: after the connect phase (the receivers, or the echo clients,
//!    are all up or failed) none is up: the run stops there, before sending anything. S2, whose
//!    connects are the run, stops at the first check below with nothing connected;
//! 2. **errors dominate** while it runs: checked every second over the last 5 s, at least 10
//!    errors and more errors than successes (connections that came up, connects, messages sent
//!    and messages received). The run's loops are told to end ([`Stats::stop`]); what they did
//!    is reported (a scenario that does not end within 15 s more is abandoned and the report
//!    holds the counters so far);
//! 3. **errors dominate** at the end: more errors than connections up, messages sent and
//!    received together.
//!
//! Rules 1 and 2 stop the run early (`stopped_early` in the report). The summary names the
//! errors by kind with the first message of each ([`crate::failure`]) and what to check.
//!
//! The watch covers the [`Stats`] of the scenario (they join it in [`Stats::progress`], which
//! every scenario calls); it is scoped to one [`crate::run`] (a task-local), so runs in one
//! process (tests) do not see each other's counters. Worker processes (`--workers`) are not
//! watched: their receivers are counted in the connect-phase check, their errors (by kind)
//! in the parent's report.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::failure::ErrorKinds;
use crate::stats::{Latency, Report, Stats, empty_histogram};

/// How often the watch looks.
const TICK: Duration = Duration::from_secs(1);
/// The window over which errors are compared with successes.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Fewest errors in a window for them to dominate.
pub const MIN_ERRORS: u64 = 10;
/// How long a stopped scenario may take to wind down (a last check drains for up to
/// [`crate::DRAIN`]).
const GRACE: Duration = Duration::from_secs(15);

tokio::task_local! {
    static MONITOR: Arc<Monitor>;
}

/// The run stopped early: the reason (without "stopped early: ").
#[derive(Debug)]
pub struct EarlyStop(pub String);

impl std::fmt::Display for EarlyStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped early: {}", self.0)
    }
}

impl std::error::Error for EarlyStop {}

/// "<what> (<counted>: <kinds>); <hint>".
fn explain(what: &str, counted: String, kinds: &ErrorKinds) -> String {
    match (kinds.is_empty(), kinds.hint()) {
        (false, Some(hint)) => format!("{what} ({counted}: {}); {hint}", kinds.describe()),
        (false, None) => format!("{what} ({counted}: {})", kinds.describe()),
        (true, _) => format!("{what} ({counted})"),
    }
}

/// Rule 1: an [`EarlyStop`] when none of `attempts` connections came up (`up` = 0).
pub fn require_connections(stats: &Stats, up: u64, attempts: u64) -> Result<()> {
    if up == 0 && attempts > 0 {
        return Err(no_connection(stats, attempts).into());
    }
    Ok(())
}

/// Rule 1's stop: none of `attempts` connections came up, with `stats`' errors by kind.
pub fn no_connection(stats: &Stats, attempts: u64) -> EarlyStop {
    EarlyStop(explain(
        "no connection came up",
        format!("{attempts} attempts"),
        &stats.error_kinds(),
    ))
}

/// The watched stats of one run.
pub(crate) struct Monitor {
    stats: Mutex<Vec<Arc<Stats>>>,
    started: Instant,
}

/// Adds `stats` to the watch of the current run, if there is one.
pub(crate) fn watch(stats: &Arc<Stats>) {
    let _ = MONITOR.try_with(|m| {
        if let Ok(mut all) = m.stats.lock() {
            all.push(stats.clone());
        }
    });
}

impl Monitor {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            stats: Mutex::new(Vec::new()),
            started: Instant::now(),
        })
    }

    fn all(&self) -> Vec<Arc<Stats>> {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `(errors, successes, connections ever up)` now.
    fn totals(&self) -> (u64, u64, u64) {
        let (mut errors, mut successes, mut up) = (0, 0, 0);
        for s in self.all() {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            errors += get(&s.errors);
            let opened = get(&s.opened) + get(&s.connects);
            up += opened;
            successes += opened + get(&s.sent) + get(&s.received);
        }
        (errors, successes, up)
    }

    /// Rule 2: resolves once errors dominate a window.
    async fn watchdog(&self) -> Stop {
        let mut history: VecDeque<(Instant, u64, u64)> = VecDeque::new();
        history.push_back((Instant::now(), 0, 0));
        let mut tick = tokio::time::interval(TICK);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let (errors, successes, up) = self.totals();
            // The window starts at the newest sample at least WINDOW old (or the first).
            while history.len() > 1 && now.duration_since(history[1].0) >= WINDOW {
                history.pop_front();
            }
            let (since, e0, s0) = history[0];
            let (e, s) = (errors.saturating_sub(e0), successes.saturating_sub(s0));
            if e >= MIN_ERRORS && e > s {
                return if up == 0 {
                    Stop::NoConnection
                } else {
                    Stop::Dominate {
                        errors: e,
                        successes: s,
                        secs: now.duration_since(since).as_secs_f64(),
                    }
                };
            }
            history.push_back((now, errors, successes));
        }
    }

    fn stop_all(&self) {
        for s in self.all() {
            s.stop();
        }
    }

    /// A report from the watched counters, for a run abandoned before its end.
    fn partial_report(&self, scenario: &str, params: serde_json::Value) -> Report {
        let mut r = Report::empty(
            scenario.to_owned(),
            params,
            self.started.elapsed().as_secs_f64(),
        );
        let mut hist = empty_histogram();
        for s in self.all() {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            r.connected += get(&s.opened) + get(&s.connects);
            r.dropped += get(&s.dropped);
            r.sent += get(&s.sent);
            r.received += get(&s.received);
            r.errors += get(&s.errors);
            r.error_kinds.absorb(&s.error_kinds());
            let _ = hist.add(s.histogram());
        }
        r.latency = Latency::of(&hist);
        r
    }
}

/// Why the watch stopped a run.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Errors and not one connection up.
    NoConnection,
    /// Errors dominated a window: its counts and length.
    Dominate {
        errors: u64,
        successes: u64,
        secs: f64,
    },
}

impl Stop {
    /// The reason, with the errors of `r` (counted until the run ended) by kind.
    fn explain(self, r: &Report) -> String {
        match self {
            Self::NoConnection => explain(
                "no connection came up",
                format!("{} failed attempts", r.errors),
                &r.error_kinds,
            ),
            Self::Dominate {
                errors,
                successes,
                secs,
            } => explain(
                "errors dominate",
                format!("{errors} errors against {successes} successes in {secs:.0} s"),
                &r.error_kinds,
            ),
        }
    }
}

/// Rule 3, on a finished run's report: its failure, if any.
pub fn final_verdict(r: &Report) -> Option<String> {
    if r.errors == 0 {
        return None;
    }
    if r.connected == 0 {
        return Some(explain(
            "no connection came up",
            format!("{} errors", r.errors),
            &r.error_kinds,
        ));
    }
    let successes = r.connected + r.sent + r.received;
    (r.errors > successes).then(|| {
        explain(
            "errors dominate",
            format!("{} errors against {successes} successes", r.errors),
            &r.error_kinds,
        )
    })
}

/// Runs `scenario` (a scenario's future) under the watch; the report's `failure` says whether
/// and why the run failed. A scenario's [`EarlyStop`] becomes a report of what was counted.
pub(crate) async fn supervise(
    name: &str,
    params: serde_json::Value,
    scenario: impl Future<Output = Result<Report>>,
) -> Result<Report> {
    let monitor = Monitor::new();
    let scenario = MONITOR.scope(monitor.clone(), scenario);
    tokio::pin!(scenario);
    let mut stopped: Option<Stop> = None;
    let outcome = tokio::select! {
        r = &mut scenario => r,
        stop = monitor.watchdog() => {
            stopped = Some(stop);
            monitor.stop_all();
            match tokio::time::timeout(GRACE, &mut scenario).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("the scenario did not end within {GRACE:?}")),
            }
        }
    };
    let stop = |mut r: Report, why: String| {
        r.failure = Some(EarlyStop(why).to_string());
        r.stopped_early = true;
        r
    };
    match (outcome, stopped) {
        (Ok(r), Some(watch)) => {
            let why = watch.explain(&r);
            Ok(stop(r, why))
        }
        (Ok(mut r), None) => {
            r.failure = final_verdict(&r);
            Ok(r)
        }
        (Err(e), watch) => {
            let partial = monitor.partial_report(name, params);
            match (e.downcast::<EarlyStop>(), watch) {
                (Ok(early), _) => Ok(stop(partial, early.0)),
                (Err(_), Some(watch)) => {
                    let why = watch.explain(&partial);
                    Ok(stop(partial, why))
                }
                (Err(e), None) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::ErrorKind;

    #[test]
    fn final_verdict_rules() {
        let mut r = Report::empty("s".into(), serde_json::Value::Null, 1.0);
        assert_eq!(final_verdict(&r), None, "nothing done, nothing failed");
        r.errors = 3;
        let stats = Stats::new();
        stats.error(ErrorKind::ConnectionRefused, || {
            "negotiate at http://x:1".into()
        });
        r.error_kinds = stats.error_kinds();
        let f = final_verdict(&r).expect("no connection");
        assert!(
            f.starts_with("no connection came up (3 errors: 1 connection refused: negotiate at http://x:1); is the broker running"),
            "{f}"
        );
        r.connected = 2;
        r.sent = 1;
        assert_eq!(final_verdict(&r), None, "3 errors, 3 successes");
        r.errors = 4;
        assert!(
            final_verdict(&r)
                .expect("dominate")
                .starts_with("errors dominate (4 errors against 3 successes")
        );
    }

    #[test]
    fn no_connection_names_the_attempts_and_kinds() {
        let stats = Stats::new();
        assert!(require_connections(&stats, 1, 5).is_ok());
        assert!(require_connections(&stats, 0, 0).is_ok());
        for _ in 0..5 {
            stats.error(ErrorKind::Unauthorized, || {
                "negotiate answered 401: bad key".into()
            });
        }
        let e = require_connections(&stats, 0, 5).expect_err("none up");
        assert_eq!(
            e.to_string(),
            format!(
                "stopped early: no connection came up (5 attempts: 5 unauthorized: negotiate answered 401: bad key); {}",
                ErrorKind::Unauthorized.hint()
            )
        );
    }
}
