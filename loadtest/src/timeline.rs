//! Per-second samples of a run (throughput and latency over time) for `--report`.
//!
//! Nothing here touches the hot path. Receivers and senders keep counting into the atomics of
//! [`Stats`] and recording into the sharded [`Hist`]s they already use; once a second a
//! sampler task reads each watched source, subtracts what it read the second before (the
//! counters and histograms only grow) and stores the difference as one [`Sample`]. A second
//! costs one merge of 16 histogram shards per source, not one lock or allocation per message.
//!
//! Samples are keyed by the Unix second at which their interval ends, and the sampler ticks
//! on whole Unix seconds, so samples taken by different processes of one run (`--workers`,
//! or generator processes run side by side and `merge`d) line up and merge exactly: counts are
//! summed and histograms added. Latencies in a sample are kept to 2 significant digits (at
//! most 1 % off), which keeps a second's histogram to a few hundred `(µs, count)` pairs.
//!
//! The timeline is process-wide: [`start`] begins one (the `run` of a scenario with
//! `--report`, and every worker process), [`finish`] ends it and returns its samples. Stats
//! join it from [`Stats::progress`], which every scenario calls; pools and other latency
//! histograms with [`watch_hist`]; the timeline keeps them until it ends, so the last
//! (partial) second is read after the scenario has dropped them. One recorded run per process
//! at a time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{Hist, Stats, add_pairs, empty_histogram, histogram_pairs, since_baseline};

/// One interval of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix second at which the interval ends.
    pub t: u64,
    /// Length of the interval in seconds (1, or less for the last one of a run).
    pub secs: f64,
    /// Messages sent in the interval.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Errors.
    pub errors: u64,
    /// Connects completed.
    pub connects: u64,
    /// Latencies `(µs, count)` recorded in the interval (2 significant digits).
    pub latency: Vec<(u64, u64)>,
}

impl Sample {
    /// Adds `other` (the same interval in another process, or the next one when coarsening).
    pub fn absorb(&mut self, other: &Self) {
        self.secs = self.secs.max(other.secs);
        self.sent += other.sent;
        self.received += other.received;
        self.errors += other.errors;
        self.connects += other.connects;
        if !other.latency.is_empty() {
            let mut h = coarse_histogram();
            add_pairs(&mut h, &self.latency);
            add_pairs(&mut h, &other.latency);
            self.latency = histogram_pairs(&h);
        }
    }

    /// The latency histogram of the interval.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = empty_histogram();
        add_pairs(&mut h, &self.latency);
        h
    }
}

/// Samples of several processes (or files) merged: the same second summed.
pub fn merge(parts: impl IntoIterator<Item = Sample>) -> Vec<Sample> {
    let mut by_t: BTreeMap<u64, Sample> = BTreeMap::new();
    for s in parts {
        match by_t.get_mut(&s.t) {
            Some(m) => m.absorb(&s),
            None => {
                by_t.insert(s.t, s);
            }
        }
    }
    by_t.into_values().collect()
}

/// At most `max` points: runs of consecutive samples merged (counts summed, histograms added,
/// lengths added), so a 30-minute soak draws as well as a 10-second run.
pub fn coarsen(samples: &[Sample], max: usize) -> Vec<Sample> {
    let k = samples.len().div_ceil(max.max(1)).max(1);
    if k == 1 {
        return samples.to_vec();
    }
    samples
        .chunks(k)
        .map(|chunk| {
            let mut m = chunk[0].clone();
            for s in &chunk[1..] {
                let secs = m.secs + s.secs;
                m.absorb(s);
                m.secs = secs;
                m.t = s.t;
            }
            m
        })
        .collect()
}

fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// `h` at 2 significant digits, as pairs.
fn coarse_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut c = coarse_histogram();
    for v in h.iter_recorded() {
        let _ = c.record_n(v.value_iterated_to().max(1), v.count_at_value());
    }
    histogram_pairs(&c)
}

struct WatchedStats {
    stats: Arc<Stats>,
    counts: [u64; 4],
    latency: Histogram<u64>,
}

struct WatchedHist {
    hist: Arc<Hist>,
    seen: Histogram<u64>,
}

struct Timeline {
    stats: Vec<WatchedStats>,
    hists: Vec<WatchedHist>,
    samples: BTreeMap<u64, Sample>,
    last: SystemTime,
    task: Option<tokio::task::JoinHandle<()>>,
}

static CURRENT: Mutex<Option<Timeline>> = Mutex::new(None);

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Timeline {
    /// Reads every source and stores what changed since the last read as the sample ending
    /// at Unix second `t`.
    fn sample(&mut self, t: u64) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(self.last)
            .unwrap_or_default()
            .as_secs_f64();
        self.last = now;
        let mut s = Sample {
            t,
            secs,
            ..Sample::default()
        };
        let mut latency = empty_histogram();
        for w in &mut self.stats {
            let stats = &w.stats;
            let c = stats.counts();
            s.sent += c[0].saturating_sub(w.counts[0]);
            s.received += c[1].saturating_sub(w.counts[1]);
            s.errors += c[2].saturating_sub(w.counts[2]);
            s.connects += c[3].saturating_sub(w.counts[3]);
            w.counts = c;
            let now = stats.latency().cumulative();
            let mut since = now.clone();
            since_baseline(&mut since, &w.latency);
            let _ = latency.add(&since);
            w.latency = now;
        }
        for w in &mut self.hists {
            let now = w.hist.cumulative();
            let mut since = now.clone();
            since_baseline(&mut since, &w.seen);
            let _ = latency.add(&since);
            w.seen = now;
        }
        s.latency = coarse_pairs(&latency);
        match self.samples.get_mut(&t) {
            Some(m) => m.absorb(&s),
            None => {
                self.samples.insert(t, s);
            }
        }
    }
}

/// Starts recording this process's timeline (a sampler task on the current tokio runtime).
/// Fails when one is already being recorded.
pub fn start() -> anyhow::Result<()> {
    let mut cur = CURRENT
        .lock()
        .map_err(|_| anyhow::anyhow!("timeline lock"))?;
    if cur.is_some() {
        anyhow::bail!("a timeline is already being recorded in this process");
    }
    let task = tokio::spawn(async {
        loop {
            let now = unix(SystemTime::now());
            let next = now.as_secs() + 1;
            tokio::time::sleep(Duration::from_secs(next).saturating_sub(now)).await;
            if let Ok(mut cur) = CURRENT.lock()
                && let Some(tl) = cur.as_mut()
            {
                tl.sample(next);
            }
        }
    });
    *cur = Some(Timeline {
        stats: Vec::new(),
        hists: Vec::new(),
        samples: BTreeMap::new(),
        last: SystemTime::now(),
        task: Some(task),
    });
    Ok(())
}

/// Whether a timeline is being recorded.
pub fn recording() -> bool {
    CURRENT.lock().map(|c| c.is_some()).unwrap_or(false)
}

/// Ends the timeline: one last (partial) sample, then every sample with those of other
/// processes added by [`absorb`]. Empty when none was being recorded.
pub fn finish() -> Vec<Sample> {
    let Ok(mut cur) = CURRENT.lock() else {
        return Vec::new();
    };
    let Some(mut tl) = cur.take() else {
        return Vec::new();
    };
    if let Some(task) = tl.task.take() {
        task.abort();
    }
    // The interval in progress ends at the next whole second.
    tl.sample(unix(SystemTime::now()).as_secs() + 1);
    tl.samples.into_values().collect()
}

/// Adds samples of another process (a worker's) to the timeline being recorded.
pub fn absorb(samples: Vec<Sample>) {
    if let Ok(mut cur) = CURRENT.lock()
        && let Some(tl) = cur.as_mut()
    {
        for s in samples {
            match tl.samples.get_mut(&s.t) {
                Some(m) => m.absorb(&s),
                None => {
                    tl.samples.insert(s.t, s);
                }
            }
        }
    }
}

/// Counts and latencies of `stats` join the timeline being recorded (no-op when none).
pub fn watch_stats(stats: &Arc<Stats>) {
    if let Ok(mut cur) = CURRENT.lock()
        && let Some(tl) = cur.as_mut()
    {
        tl.stats.push(WatchedStats {
            stats: stats.clone(),
            counts: stats.counts(),
            latency: stats.latency().cumulative(),
        });
    }
}

/// Latencies of `hist` join the timeline being recorded (no-op when none).
pub fn watch_hist(hist: &Arc<Hist>) {
    if let Ok(mut cur) = CURRENT.lock()
        && let Some(tl) = cur.as_mut()
    {
        tl.hists.push(WatchedHist {
            hist: hist.clone(),
            seen: hist.cumulative(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn sample(t: u64, received: u64, latencies: &[u64]) -> Sample {
        let mut h = empty_histogram();
        for &l in latencies {
            h.record(l).expect("in range");
        }
        Sample {
            t,
            secs: 1.0,
            received,
            latency: coarse_pairs(&h),
            ..Sample::default()
        }
    }

    #[test]
    fn samples_of_two_processes_merge_by_second() {
        let a = vec![sample(100, 10, &[1000, 2000]), sample(101, 5, &[3000])];
        let b = vec![sample(101, 7, &[9000]), sample(102, 1, &[])];
        let m = merge(a.into_iter().chain(b));
        assert_eq!(m.iter().map(|s| s.t).collect::<Vec<_>>(), [100, 101, 102]);
        assert_eq!(m[1].received, 12);
        let h = m[1].histogram();
        assert_eq!(h.len(), 2);
        assert!((8900..=9100).contains(&h.max()), "{}", h.max());
    }

    #[test]
    fn coarsening_keeps_totals_and_lengths() {
        let s: Vec<Sample> = (0..10).map(|i| sample(100 + i, i, &[500])).collect();
        let c = coarsen(&s, 4);
        assert_eq!(c.len(), 4, "chunks of 3: 3 + 3 + 3 + 1");
        assert_eq!(c.iter().map(|s| s.received).sum::<u64>(), 45);
        assert_eq!(c[0].secs, 3.0);
        assert_eq!(c[0].t, 102, "a chunk ends where its last sample ends");
        assert_eq!(c[3].secs, 1.0);
        assert_eq!(c.iter().map(|s| s.histogram().len()).sum::<u64>(), 10);
        assert_eq!(coarsen(&s, 100), s);
    }

    #[test]
    fn coarse_pairs_stay_within_one_percent() {
        let mut h = empty_histogram();
        for v in [1u64, 99, 1234, 56_789, 2_345_678] {
            h.record(v).expect("in range");
        }
        let mut c = empty_histogram();
        add_pairs(&mut c, &coarse_pairs(&h));
        assert_eq!(c.len(), 5);
        for (q, want) in [(0.0, 1u64), (0.5, 1234), (1.0, 2_345_678)] {
            let got = c.value_at_quantile(q);
            assert!(
                got.abs_diff(want) as f64 <= want as f64 * 0.01 + 1.0,
                "q {q}: {got} vs {want}"
            );
        }
    }

    /// The only test in this crate that records a timeline (it is process-wide).
    #[tokio::test]
    async fn the_sampler_reads_counters_and_histograms_once_a_second() {
        start().expect("no other timeline");
        assert!(start().is_err(), "one timeline per process");
        let stats = Arc::new(Stats::new());
        let _progress = stats.progress(true);
        let hist = Arc::new(Hist::new());
        watch_hist(&hist);
        for i in 0..50u64 {
            stats.received.fetch_add(1, Ordering::Relaxed);
            stats.record_us(i as usize, 1000);
            hist.record_us(i as usize, 5000);
        }
        // The pool's own per-phase take must not disturb the timeline (and vice versa).
        assert_eq!(hist.take().len(), 50);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        stats.sent.fetch_add(3, Ordering::Relaxed);
        hist.record_us(0, 7000);
        let samples = finish();
        assert!(!recording());
        assert!(samples.len() >= 2, "{samples:?}");
        let total: u64 = samples.iter().map(|s| s.received).sum();
        assert_eq!(total, 50);
        assert_eq!(samples.iter().map(|s| s.sent).sum::<u64>(), 3);
        let lat: u64 = samples.iter().map(|s| s.histogram().len()).sum();
        assert_eq!(lat, 101, "50 + 50 + 1, each counted once");
        assert_eq!(hist.take().len(), 1, "take still returns only what is new");
        assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
    }
}
