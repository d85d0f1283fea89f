//! `[metrics]`: how much `/metrics` says about individual hubs.

use serde::{Deserialize, Serialize};

/// Largest `metrics.top_hubs`: each labelled hub adds a few series per scrape.
pub(super) const MAX_TOP_HUBS: u64 = 1000;

/// `[metrics]`: the per-hub series of `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// How many of the busiest hubs get series of their own (`hub="<name>"`); every other hub
    /// is summed under `hub="(other)"`, so that many hub names cannot multiply the series.
    /// 0: only `(other)`.
    pub top_hubs: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            top_hubs: crate::telemetry::hubs::DEFAULT_TOP_HUBS,
        }
    }
}
