//! `[logs]`: resource logs (Azure's categories) — their format, each category's level, and a
//! bound on the lines written per second.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, MAX_COUNT};

/// How log lines are written (on stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (through `tracing`'s formatter).
    #[default]
    Text,
    /// One JSON object per line: resource logs in Azure's shape, other logs as `tracing` JSON.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown log format '{s}' (use text or json)")),
        }
    }
}

/// A resource-log level: events at this level and more severe ones are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum LogLevel {
    /// Nothing.
    Off = 0,
    /// Failures of the broker itself.
    Error = 1,
    /// Connections refused or ended abnormally (ping timeout, slow client, protocol error, ...).
    Warning = 2,
    /// Every connect and disconnect, every HTTP request.
    Info = 3,
    /// Also every message (message tracing).
    Debug = 4,
}

impl LogLevel {
    /// Its name in the configuration and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
            Self::Debug => "debug",
        }
    }

    /// The level of a stored `u8` (see [`LogLevel`]'s representation).
    pub fn from_u8(n: u8) -> Self {
        match n {
            0 => Self::Off,
            1 => Self::Error,
            2 => Self::Warning,
            3 => Self::Info,
            _ => Self::Debug,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(Self::Off),
            "error" => Ok(Self::Error),
            "warning" | "warn" => Ok(Self::Warning),
            "info" | "information" | "informational" => Ok(Self::Info),
            "debug" | "verbose" | "trace" => Ok(Self::Debug),
            _ => Err(format!(
                "unknown log level '{s}' (use off, error, warning, info or debug)"
            )),
        }
    }
}

/// `[logs]`: the resource logs. Levels can be changed at runtime (`PATCH /admin/logs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// `text` or `json` (`--log-format`).
    pub format: LogFormat,
    /// Connects, disconnects with their close category and reason, refused handshakes and
    /// tokens, throttled clients, hub-server connections up and down.
    pub connectivity: LogLevel,
    /// Message tracing (`debug`): messages from clients, hub servers and the REST API, with the
    /// `tracingId` Azure's SDKs send.
    pub messaging: LogLevel,
    /// HTTP requests: method, path (never the query: it may hold a token), status, duration.
    pub http: LogLevel,
    /// Resource-log lines written per second and category at most; more are dropped, counted
    /// and summed up in one line. The live trace is not limited by it (its viewers have their
    /// own bounded queues). 0: no limit.
    pub max_lines_per_second: u32,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            connectivity: LogLevel::Warning,
            messaging: LogLevel::Off,
            http: LogLevel::Off,
            max_lines_per_second: 1000,
        }
    }
}

impl LogsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if u64::from(self.max_lines_per_second) > MAX_COUNT {
            return Err(ConfigError::new(
                "logs.max_lines_per_second",
                format!("must be at most {MAX_COUNT}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_azure_and_switchboard_spellings_and_order_by_severity() {
        assert_eq!("Informational".parse(), Ok(LogLevel::Info));
        assert_eq!("verbose".parse(), Ok(LogLevel::Debug));
        assert_eq!("warn".parse(), Ok(LogLevel::Warning));
        assert!("loud".parse::<LogLevel>().is_err());
        assert!(LogLevel::Error < LogLevel::Warning && LogLevel::Info < LogLevel::Debug);
        for level in [
            LogLevel::Off,
            LogLevel::Error,
            LogLevel::Warning,
            LogLevel::Info,
            LogLevel::Debug,
        ] {
            assert_eq!(LogLevel::from_u8(level as u8), level);
            assert_eq!(level.as_str().parse(), Ok(level));
        }
    }
}
