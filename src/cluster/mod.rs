//! Cluster mode: several Switchboard nodes serve one set of hubs over a shared engine (Redis).
//!
//! Without a cluster nothing here runs: the single-node broker is the embedded default.

pub mod engine;
pub mod local;
pub mod node;
pub mod redis;
pub(crate) mod token;
pub(crate) mod wire;

pub use self::engine::{Command, Engine, EngineError, Reply, Subscriber, SubscriberEvent};
pub use self::local::LocalEngine;
pub use self::node::{Cluster, ClusterSettings, Unreachable};
pub use self::redis::{RedisEngine, RedisEngineConfig};
