//! Running a client's hub calls, as ASP.NET Core's `DefaultHubDispatcher` does
//! (`docs/protocol.md#hub-protocol`): method lookup (case-insensitive), invocation mode checks,
//! argument binding, the Completion or the StreamItems + Completion that answer, and the .NET
//! error texts a client sees.
//!
//! Each connected client has one worker task (`run_worker`): `on_connected`, then its
//! non-streaming invocations one at a time in arrival order (.NET's default
//! `MaximumParallelInvocationsPerClient` of 1), then `on_disconnected` once the connection actor
//! has dropped the work queue. Streaming methods and methods reading upload streams run as their
//! own tasks, as in .NET. This module does no socket I/O: answers go through the client's
//! connection outbox.

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};

use super::codec;
use super::connection::{CloseClient, ConnCommand};
use super::context::Context;
use super::hub::{BINDING_ERROR_DETAIL, BoxFuture, Hub, HubError, Method, MethodOutput};
use super::upload::UploadReceiver;
use crate::protocol::{Close, CompletionOutcome, Invocation};

/// The generic Close error text (.NET `SendCloseAsync`).
pub(crate) const CLOSED_WITH_ERROR: &str = "Connection closed with an error.";

/// Work for a client's worker.
pub(crate) enum ClientWork {
    /// An Invocation, with the receivers of its upload streams.
    Invoke {
        invocation: Invocation,
        uploads: Vec<UploadReceiver>,
    },
    /// A StreamInvocation and its cancel signal.
    Stream {
        invocation: Invocation,
        cancel: oneshot::Receiver<()>,
    },
}

/// The worker of one client: `on_connected`, then its invocations in order, then
/// `on_disconnected` once the connection actor has dropped the work queue.
pub(crate) async fn run_worker(
    ctx: Context,
    mut work: mpsc::Receiver<ClientWork>,
    disconnect: oneshot::Receiver<Option<String>>,
) {
    let hub = ctx.server().hub().clone();
    let connected = match AssertUnwindSafe(hub.on_connected(ctx.clone()))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(_) => Err(HubError::internal("on_connected panicked")),
    };
    if let Err(err) = connected {
        tracing::debug!(connection_id = %ctx.connection_id(), error = %err, "on_connected failed; closing the client");
        let close = CloseClient {
            connection_id: ctx.connection_id().to_owned(),
            close_message: Some(Close {
                error: Some(err.client_text(CLOSED_WITH_ERROR, hub.detailed_errors())),
                allow_reconnect: false,
            }),
            close_connection: Some(err.message().to_owned()),
            notify_hub: false,
            hub_error: None,
        };
        // If the connection is gone, so is the client.
        let _ = ctx
            .client
            .outbox
            .send(ConnCommand::CloseClient(close))
            .await;
        return;
    }
    while let Some(item) = work.recv().await {
        match item {
            ClientWork::Invoke {
                invocation,
                uploads,
            } => {
                if uploads.is_empty() {
                    invoke(ctx.clone(), hub.clone(), invocation, uploads).await;
                } else {
                    // Methods reading upload streams run beside the queue, as in .NET.
                    tokio::spawn(invoke(ctx.clone(), hub.clone(), invocation, uploads));
                }
            }
            ClientWork::Stream { invocation, cancel } => {
                tokio::spawn(stream(ctx.clone(), hub.clone(), invocation, cancel));
            }
        }
    }
    if let Ok(error) = disconnect.await {
        // A panicking handler must not take the worker's runtime thread down.
        let _ = AssertUnwindSafe(hub.on_disconnected(ctx, error))
            .catch_unwind()
            .await;
    }
}

fn method_missing(target: &str) -> String {
    format!(
        "Failed to invoke '{target}' due to an error on the server. HubException: Method does not exist."
    )
}

fn binding_failed(target: &str, detailed: bool) -> String {
    let prefix = format!("Failed to invoke '{target}' due to an error on the server.");
    if detailed {
        format!("{prefix} {BINDING_ERROR_DETAIL}")
    } else {
        prefix
    }
}

fn unexpected(target: &str) -> String {
    format!("An unexpected error occurred invoking '{target}' on the server.")
}

fn stream_count_mismatch(target: &str, sent: usize, expected: usize, detailed: bool) -> String {
    HubError::new(format!(
        "Client sent {sent} stream(s), Hub method expects {expected}."
    ))
    .client_text(&unexpected(target), detailed)
}

/// Runs a method future, catching panics.
async fn run_method(
    fut: BoxFuture<Result<MethodOutput, HubError>>,
    target: &str,
    detailed: bool,
) -> Result<MethodOutput, String> {
    let result = match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(HubError::internal("the hub method panicked")),
    };
    result.map_err(|err| {
        tracing::debug!(%target, error = %err, "hub method failed");
        err.client_text(&unexpected(target), detailed)
    })
}

/// One Invocation (non-streaming), answered with a Completion when it has an id.
async fn invoke(ctx: Context, hub: Hub, invocation: Invocation, mut uploads: Vec<UploadReceiver>) {
    let Invocation {
        invocation_id,
        target,
        arguments,
        stream_ids,
        ..
    } = invocation;
    let detailed = hub.detailed_errors();
    let outcome = match hub.method(&target) {
        None => Err(method_missing(&target)),
        Some(Method::Stream(_)) => Err(format!(
            "The client attempted to invoke the streaming '{target}' method with a non-streaming invocation."
        )),
        Some(method) if method.upload_streams() != stream_ids.len() => Err(stream_count_mismatch(
            &target,
            stream_ids.len(),
            method.upload_streams(),
            detailed,
        )),
        Some(Method::Unary(f)) => match f(ctx.clone(), arguments) {
            Ok(fut) => run_method(fut, &target, detailed).await,
            Err(err) => {
                tracing::debug!(%target, error = %err.0, "argument binding failed");
                Err(binding_failed(&target, detailed))
            }
        },
        Some(Method::Upload(f)) => match uploads.pop() {
            None => Err(stream_count_mismatch(&target, 0, 1, detailed)),
            Some(upload) => match f(ctx.clone(), arguments, upload) {
                Ok(fut) => run_method(fut, &target, detailed).await,
                Err(err) => {
                    tracing::debug!(%target, error = %err.0, "argument binding failed");
                    Err(binding_failed(&target, detailed))
                }
            },
        },
    };
    // Non-blocking invocations get no answer.
    let Some(id) = invocation_id else {
        return;
    };
    let outcome = match outcome {
        Ok(MethodOutput::Void) => CompletionOutcome::Void,
        Ok(MethodOutput::Value(raw)) => CompletionOutcome::Result(raw),
        Err(text) => CompletionOutcome::Error(text),
    };
    send_completion(&ctx, &id, outcome).await;
}

async fn send_completion(ctx: &Context, id: &str, outcome: CompletionOutcome) {
    match codec::completion_frame(ctx.protocol(), id, outcome) {
        Ok(frame) => {
            if let Err(err) = ctx.client.send_payload(frame).await {
                tracing::debug!(connection_id = %ctx.connection_id(), error = %err, "completion not sent");
            }
        }
        Err(err) => {
            tracing::warn!(connection_id = %ctx.connection_id(), error = %err, "could not encode a completion")
        }
    }
}

/// One StreamInvocation: StreamItems, then a Completion (void on success or cancellation, the
/// error text on failure).
async fn stream(ctx: Context, hub: Hub, invocation: Invocation, cancel: oneshot::Receiver<()>) {
    let Invocation {
        invocation_id,
        target,
        arguments,
        stream_ids,
        ..
    } = invocation;
    let id = invocation_id.unwrap_or_default();
    let detailed = hub.detailed_errors();
    let items = match hub.method(&target) {
        None => Err(method_missing(&target)),
        Some(Method::Stream(_)) if !stream_ids.is_empty() => Err(stream_count_mismatch(
            &target,
            stream_ids.len(),
            0,
            detailed,
        )),
        Some(Method::Stream(f)) => f(ctx.clone(), arguments).map_err(|err| {
            tracing::debug!(%target, error = %err.0, "argument binding failed");
            binding_failed(&target, detailed)
        }),
        Some(_) => Err(format!(
            "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
        )),
    };
    let error = match items {
        Err(text) => Some(text),
        Ok(items) => {
            let mut items = AssertUnwindSafe(items).catch_unwind();
            let mut cancel = cancel;
            loop {
                tokio::select! {
                    biased;
                    _ = &mut cancel => break None,
                    item = items.next() => match item {
                        None => break None,
                        Some(Ok(Ok(raw))) => {
                            let sent = match codec::stream_item_frame(ctx.protocol(), &id, raw) {
                                Ok(frame) => ctx.client.send_payload(frame).await,
                                Err(err) => Err(err),
                            };
                            if let Err(err) = sent {
                                tracing::debug!(%target, error = %err, "stream item not sent; stopping the stream");
                                break None;
                            }
                        }
                        Some(Ok(Err(err))) => {
                            break Some(err.client_text(
                                "An error occurred on the server while streaming results.",
                                detailed,
                            ));
                        }
                        Some(Err(_panic)) => {
                            break Some(HubError::internal("the stream panicked").client_text(
                                "An error occurred on the server while streaming results.",
                                detailed,
                            ));
                        }
                    }
                }
            }
        }
    };
    ctx.client.streams.lock().remove(&id);
    let outcome = match error {
        Some(text) => CompletionOutcome::Error(text),
        None => CompletionOutcome::Void,
    };
    send_completion(&ctx, &id, outcome).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        assert_eq!(
            method_missing("Nope"),
            "Failed to invoke 'Nope' due to an error on the server. HubException: Method does not exist."
        );
        assert_eq!(
            binding_failed("Add", false),
            "Failed to invoke 'Add' due to an error on the server."
        );
        assert_eq!(
            binding_failed("Add", true),
            "Failed to invoke 'Add' due to an error on the server. InvalidDataException: Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked."
        );
        assert_eq!(
            stream_count_mismatch("Up", 2, 1, false),
            "An unexpected error occurred invoking 'Up' on the server. HubException: Client sent 2 stream(s), Hub method expects 1."
        );
    }
}
