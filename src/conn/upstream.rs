//! The upstream side of a serverless client connection: one worker task per connection that
//! POSTs its invocations and its `disconnected` event to the matching upstream, in order.
//!
//! The connection actor keeps reading its socket and draining its outbox while the worker
//! waits on HTTP; per-connection order is kept because one worker handles one connection's
//! calls one at a time (the emulator gets the same order by awaiting each call). The worker is
//! started at the first call, so an idle connection costs nothing.
//!
//! **When the worker's queue is full** (`upstream_options.max_queue_per_connection` calls
//! waiting, 256 by default, or `upstream_options.max_queue_bytes_per_connection` bytes of
//! invocation bodies waiting or in flight, 4 MiB by default; a call always fits when the worker
//! holds none): a blocking invocation is answered at once with the error [`QUEUE_FULL_ERROR`], a
//! non-blocking one is dropped, and both are counted in `switchboard_upstream_queue_full_total`.
//! The `disconnected` event waits for room instead (it is the last call of the connection, and
//! carries no body).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::env::ClientEnv;
use crate::peer::ConnHandle;
use crate::protocol::{Completion, CompletionOutcome, HubMessage, HubProtocol};
use crate::telemetry::{Metrics, UpstreamEvent};
use crate::upstream::{self, Category, DotSegment, UpstreamConnection, UpstreamRequest};

/// Completion error when a connection has too many upstream calls waiting.
pub(crate) const QUEUE_FULL_ERROR: &str =
    "Invocation failed: too many invocations of this connection are waiting for the upstream.";

enum Job {
    Invoke {
        target: String,
        invocation_id: Option<String>,
        body: Bytes,
    },
    Disconnected {
        error: Option<String>,
    },
}

/// Completion error for an invocation whose target cannot be a segment of the upstream URL's
/// path (`.` or `..`, see [`DotSegment`]).
pub(crate) fn unsendable_target_error(target: &str, e: DotSegment) -> String {
    format!("Invocation failed: the target '{target}' cannot be sent to the upstream: {e}.")
}

/// The queue was full; the call was not made.
#[derive(Debug)]
pub(crate) struct QueueFull;

/// The bytes of the invocation bodies a worker holds (waiting or in flight), against a bound.
#[derive(Debug)]
struct ByteBudget {
    used: AtomicUsize,
    max: usize,
}

impl ByteBudget {
    fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Take `len` bytes; `false` when they do not fit. Anything fits an empty budget, so a
    /// message of the maximum size can always be sent alone.
    fn try_take(&self, len: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(len) <= self.max).then(|| used + len)
            })
            .is_ok()
    }

    /// Give back what [`try_take`](Self::try_take) took.
    fn give_back(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::AcqRel);
    }
}

/// Front of one connection's upstream worker.
pub(crate) struct UpstreamLink {
    tx: mpsc::Sender<Job>,
    budget: Arc<ByteBudget>,
}

impl UpstreamLink {
    /// Start the worker for `conn`.
    pub(crate) fn start(env: Arc<ClientEnv>, conn: ConnHandle, info: UpstreamConnection) -> Self {
        let (tx, rx) = mpsc::channel(env.upstream_queue);
        let budget = Arc::new(ByteBudget::new(env.upstream_queue_bytes));
        let tasks = env.upstream_tasks.clone();
        tasks.spawn(worker(rx, env, conn, info, budget.clone()));
        Self { tx, budget }
    }

    /// Queue an invocation without waiting.
    pub(crate) fn invoke(
        &self,
        target: String,
        invocation_id: Option<String>,
        body: Bytes,
    ) -> Result<(), QueueFull> {
        let len = body.len();
        if !self.budget.try_take(len) {
            return Err(QueueFull);
        }
        let job = Job::Invoke {
            target,
            invocation_id,
            body,
        };
        self.tx.try_send(job).map_err(|_| {
            self.budget.give_back(len);
            QueueFull
        })
    }

    /// Queue the `disconnected` event after every earlier call.
    pub(crate) async fn disconnected(&self, error: Option<String>) {
        // A worker that is gone has nothing left to send.
        let _ = self.tx.send(Job::Disconnected { error }).await;
    }
}

async fn worker(
    mut rx: mpsc::Receiver<Job>,
    env: Arc<ClientEnv>,
    conn: ConnHandle,
    info: UpstreamConnection,
    budget: Arc<ByteBudget>,
) {
    let protocol = conn.protocol();
    while let Some(job) = rx.recv().await {
        let keys = env.keys.current();
        match job {
            Job::Invoke {
                target,
                invocation_id,
                body,
            } => {
                // The body's bytes are the worker's until the call is over, however it ends.
                let _held = Held {
                    budget: &budget,
                    len: body.len(),
                };
                let url =
                    env.policy
                        .snapshot()
                        .upstream
                        .resolve(&info.hub, Category::Messages, &target);
                let url = match url {
                    Some(Ok(url)) => url,
                    // The rules changed since the message was routed.
                    None => {
                        if let Some(id) = invocation_id {
                            let text = crate::routing::no_upstream_error(&info.hub, &target);
                            push_error(&conn, protocol, &id, text);
                        }
                        continue;
                    }
                    // The target would move the URL's path: it is not sent anywhere.
                    Some(Err(e)) => {
                        Metrics::inc(&env.metrics.invocations_rejected);
                        if let Some(id) = invocation_id {
                            push_error(&conn, protocol, &id, unsendable_target_error(&target, e));
                        }
                        continue;
                    }
                };
                let request = UpstreamRequest::invocation(url, &info, &target, protocol, body);
                Metrics::inc(&env.metrics.upstream_calls);
                let started = std::time::Instant::now();
                let result = env.upstream.call(&request, keys.all()).await;
                let event = if invocation_id.is_some() {
                    UpstreamEvent::Invocation
                } else {
                    UpstreamEvent::Message
                };
                let status = result.as_ref().ok().map(|r| r.status);
                env.metrics
                    .labelled
                    .upstream_call(event, status, started.elapsed());
                if !matches!(&result, Ok(r) if (200..300).contains(&r.status)) {
                    Metrics::inc(&env.metrics.upstream_failures);
                }
                if let Some(id) = invocation_id {
                    // An overflowing outbox closes the connection; nothing more to do here.
                    let _ = conn
                        .outbox()
                        .push(upstream::completion_for(&result, protocol, &id));
                }
            }
            Job::Disconnected { error } => {
                send_disconnected(&env, &info, error.as_deref()).await;
                break;
            }
        }
    }
}

/// An invocation body's share of the [`ByteBudget`], given back when dropped.
struct Held<'a> {
    budget: &'a ByteBudget,
    len: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.len);
    }
}

/// POST the `disconnected` event of a connection if a rule matches it.
pub(crate) async fn send_disconnected(
    env: &ClientEnv,
    info: &UpstreamConnection,
    error: Option<&str>,
) {
    // Hub names start with a letter and event names are fixed: never a dot segment.
    let Some(Ok(url)) = env.policy.snapshot().upstream.resolve(
        &info.hub,
        Category::Connections,
        upstream::DISCONNECTED_EVENT,
    ) else {
        return;
    };
    let request = UpstreamRequest::disconnected(url, info, error);
    Metrics::inc(&env.metrics.upstream_calls);
    let started = std::time::Instant::now();
    let result = env
        .upstream
        .call_event(&request, env.keys.current().all())
        .await;
    let status = result.as_ref().ok().map(|r| r.status);
    env.metrics
        .labelled
        .upstream_call(UpstreamEvent::Disconnected, status, started.elapsed());
    if !matches!(&result, Ok(r) if (200..300).contains(&r.status)) {
        Metrics::inc(&env.metrics.upstream_failures);
    }
}

/// POST the `connected` event; `Err(text)` is the handshake error when the upstream refuses or
/// cannot be reached. `Ok(true)` when an event was sent.
pub(crate) async fn send_connected(
    env: &ClientEnv,
    info: &UpstreamConnection,
) -> Result<bool, String> {
    let Some(Ok(url)) = env.policy.snapshot().upstream.resolve(
        &info.hub,
        Category::Connections,
        upstream::CONNECTED_EVENT,
    ) else {
        return Ok(false);
    };
    let request = UpstreamRequest::connected(url, info);
    Metrics::inc(&env.metrics.upstream_calls);
    let started = std::time::Instant::now();
    let result = env
        .upstream
        .call_event(&request, env.keys.current().all())
        .await;
    let status = result.as_ref().ok().map(|r| r.status);
    env.metrics
        .labelled
        .upstream_call(UpstreamEvent::Connected, status, started.elapsed());
    match result {
        Ok(r) if (200..300).contains(&r.status) => Ok(true),
        Ok(r) => {
            Metrics::inc(&env.metrics.upstream_failures);
            Metrics::inc(&env.metrics.upstream_refused_connections);
            Err(format!(
                "The upstream refused the connection (status code {}).",
                r.status
            ))
        }
        Err(e) => {
            Metrics::inc(&env.metrics.upstream_failures);
            Metrics::inc(&env.metrics.upstream_refused_connections);
            Err(format!(
                "The upstream could not be reached to accept the connection: {e}"
            ))
        }
    }
}

/// Queue an error Completion for `invocation_id`.
pub(crate) fn push_error(
    conn: &ConnHandle,
    protocol: HubProtocol,
    invocation_id: &str,
    error: String,
) {
    let completion = HubMessage::Completion(Completion {
        headers: Vec::new(),
        invocation_id: invocation_id.to_owned(),
        outcome: CompletionOutcome::Error(error),
    });
    if let Ok(frame) = protocol.encode(&completion) {
        // An overflowing outbox closes the connection; nothing more to do here.
        let _ = conn.outbox().push(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_budget_bounds_what_a_worker_holds() {
        let budget = ByteBudget::new(1000);
        // Anything fits an empty budget, even more than its bound.
        assert!(budget.try_take(1500));
        assert!(!budget.try_take(1));
        budget.give_back(1500);
        assert!(budget.try_take(600));
        assert!(budget.try_take(400));
        assert!(!budget.try_take(1));
        budget.give_back(400);
        assert!(!budget.try_take(401));
        assert!(budget.try_take(400));
    }
}
