//! The definition of a hub: its methods and its connect / disconnect handlers, registered as
//! closures (no macros), plus [`HubError`] and the ASP.NET Core error texts a client sees
//! (`DefaultHubDispatcher.cs`, `ErrorMessageHelper.cs`; `docs/protocol.md#encodings`).
//!
//! This module owns type erasure: every handler is stored as a closure that binds its typed
//! arguments from the invocation's raw argument array (JSON or MessagePack, through serde) and
//! serialises its result in the caller's protocol. It performs no I/O; the per-client worker in
//! `client.rs` runs what it returns.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SdkError;
use super::codec;
use super::context::Context;
use super::upload::{UploadReceiver, UploadStream};
use crate::protocol::RawValue;

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A boxed, sendable stream.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// The .NET text appended (with detailed errors) to a binding failure.
pub(crate) const BINDING_ERROR_DETAIL: &str = "InvalidDataException: Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked.";

/// An error reported by a hub method or a connect handler.
///
/// [`HubError::new`] is a `HubException`: its message always reaches the client
/// (`An unexpected error occurred invoking 'Send' on the server. HubException: <message>`).
/// [`HubError::internal`] is any other failure: the client sees only the generic text unless the
/// hub has [detailed errors](HubBuilder::detailed_errors) on. Errors of SDK calls made inside a
/// method (`?` on [`SdkError`]) convert to internal errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubError {
    message: String,
    exposed: bool,
}

impl HubError {
    /// A `HubException`: the message is shown to the client.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exposed: true,
        }
    }

    /// An internal failure: the message is shown to the client only with detailed errors.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exposed: false,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the client sees the message without detailed errors.
    pub fn is_exposed(&self) -> bool {
        self.exposed
    }

    /// .NET's `ErrorMessageHelper.BuildErrorMessage`: `prefix`, followed by
    /// ` HubException: <message>` for a HubException, or ` Exception: <message>` for another
    /// error when detailed errors are on.
    pub(crate) fn client_text(&self, prefix: &str, detailed: bool) -> String {
        if self.exposed {
            format!("{prefix} HubException: {}", self.message)
        } else if detailed {
            format!("{prefix} Exception: {}", self.message)
        } else {
            prefix.to_owned()
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HubError {}

impl From<String> for HubError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HubError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<SdkError> for HubError {
    fn from(err: SdkError) -> Self {
        Self::internal(err.to_string())
    }
}

/// The arguments did not bind to the method's parameter types (the serde error, for logs).
#[derive(Debug)]
pub(crate) struct BindError(pub(crate) String);

/// What a finished method call produced, already in the caller's protocol.
#[derive(Debug)]
pub(crate) enum MethodOutput {
    /// A method returning `()`: a Completion without result.
    Void,
    /// The serialised return value.
    Value(RawValue),
}

type UnaryFn = dyn Fn(Context, RawValue) -> Result<BoxFuture<Result<MethodOutput, HubError>>, BindError>
    + Send
    + Sync;
type UploadFn = dyn Fn(
        Context,
        RawValue,
        UploadReceiver,
    ) -> Result<BoxFuture<Result<MethodOutput, HubError>>, BindError>
    + Send
    + Sync;
type StreamFn = dyn Fn(Context, RawValue) -> Result<BoxStream<Result<RawValue, HubError>>, BindError>
    + Send
    + Sync;
type ConnectedFn = dyn Fn(Context) -> BoxFuture<Result<(), HubError>> + Send + Sync;
type DisconnectedFn = dyn Fn(Context, Option<String>) -> BoxFuture<()> + Send + Sync;

/// A registered method, by kind.
pub(crate) enum Method {
    /// Invoked with an Invocation; answers one Completion.
    Unary(Arc<UnaryFn>),
    /// Invoked with an Invocation carrying one upload stream id.
    Upload(Arc<UploadFn>),
    /// Invoked with a StreamInvocation; answers StreamItems then a Completion.
    Stream(Arc<StreamFn>),
}

impl Method {
    /// How many upload streams the method takes.
    pub(crate) fn upload_streams(&self) -> usize {
        match self {
            Self::Upload(_) => 1,
            Self::Unary(_) | Self::Stream(_) => 0,
        }
    }
}

struct HubInner {
    /// Keyed by lower-cased name: .NET looks methods up with `OrdinalIgnoreCase`.
    methods: HashMap<String, Method>,
    on_connected: Option<Arc<ConnectedFn>>,
    on_disconnected: Option<Arc<DisconnectedFn>>,
    detailed_errors: bool,
}

/// A hub: named methods and connection handlers, shared by every client and server connection.
/// Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.inner.methods.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Hub")
            .field("methods", &names)
            .field("detailed_errors", &self.inner.detailed_errors)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Starts defining a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            inner: HubInner {
                methods: HashMap::new(),
                on_connected: None,
                on_disconnected: None,
                detailed_errors: false,
            },
        }
    }

    /// Looks a method up the way .NET does (case-insensitively).
    pub(crate) fn method(&self, target: &str) -> Option<&Method> {
        self.inner.methods.get(&target.to_lowercase())
    }

    /// Whether detailed errors are on.
    pub(crate) fn detailed_errors(&self) -> bool {
        self.inner.detailed_errors
    }

    /// Runs the connect handler (a no-op without one).
    pub(crate) fn on_connected(&self, ctx: Context) -> BoxFuture<Result<(), HubError>> {
        match &self.inner.on_connected {
            Some(f) => f(ctx),
            None => Box::pin(async { Ok(()) }),
        }
    }

    /// Runs the disconnect handler (a no-op without one).
    pub(crate) fn on_disconnected(&self, ctx: Context, error: Option<String>) -> BoxFuture<()> {
        match &self.inner.on_disconnected {
            Some(f) => f(ctx, error),
            None => Box::pin(async {}),
        }
    }
}

/// Builds a [`Hub`]. Registering a second method under the same name (compared
/// case-insensitively, as .NET does) replaces the first.
pub struct HubBuilder {
    inner: HubInner,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder").finish_non_exhaustive()
    }
}

/// Serialises a method's return value in the caller's protocol; `()` is a void Completion.
fn output<R: Serialize + 'static>(
    protocol: crate::protocol::HubProtocol,
    value: R,
) -> Result<MethodOutput, HubError> {
    if TypeId::of::<R>() == TypeId::of::<()>() {
        return Ok(MethodOutput::Void);
    }
    codec::to_raw(protocol, &value)
        .map(MethodOutput::Value)
        .map_err(|e| HubError::internal(e.to_string()))
}

impl HubBuilder {
    /// Registers a method. `A` is the argument list, usually a tuple (`(String, u32)`, `()` for
    /// none), bound from the client's JSON or MessagePack arguments with serde; the returned
    /// value is serialised as the Completion result (`()` → a Completion without result).
    ///
    /// Non-streaming invocations of one client run one at a time, in order.
    pub fn method<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        let handler = move |ctx: Context, raw: RawValue| {
            let args: A = codec::decode_args(&raw).map_err(BindError)?;
            let protocol = ctx.protocol();
            let fut = f(ctx, args);
            Ok(Box::pin(async move { output(protocol, fut.await?) })
                as BoxFuture<Result<MethodOutput, HubError>>)
        };
        self.inner
            .methods
            .insert(name.to_lowercase(), Method::Unary(Arc::new(handler)));
        self
    }

    /// Registers a method that takes one client-to-server stream after its arguments (the
    /// client's Invocation carries one `streamIds` entry, e.g. the JS client's
    /// `connection.send("Upload", arg, subject)`). Such methods run concurrently with the
    /// client's other invocations, as in .NET. A client sending another number of streams gets
    /// `... HubException: Client sent N stream(s), Hub method expects 1.`
    pub fn upload_method<A, T, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Context, A, UploadStream<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        let handler = move |ctx: Context, raw: RawValue, uploads: UploadReceiver| {
            let args: A = codec::decode_args(&raw).map_err(BindError)?;
            let protocol = ctx.protocol();
            let fut = f(ctx, args, UploadStream::new(uploads));
            Ok(Box::pin(async move { output(protocol, fut.await?) })
                as BoxFuture<Result<MethodOutput, HubError>>)
        };
        self.inner
            .methods
            .insert(name.to_lowercase(), Method::Upload(Arc::new(handler)));
        self
    }

    /// Registers a streaming method (server-to-client stream): the client calls it with a
    /// StreamInvocation (`connection.stream(...)`) and receives every item as a StreamItem, then
    /// a Completion. A CancelInvocation from the client drops the stream and completes it.
    pub fn stream_method<A, T, S, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        T: Serialize + Send + 'static,
        S: Stream<Item = T> + Send + 'static,
        F: Fn(Context, A) -> S + Send + Sync + 'static,
    {
        self.try_stream_method(name, move |ctx, args| f(ctx, args).map(Ok))
    }

    /// As [`stream_method`](Self::stream_method) for a stream that can fail: an `Err` item ends
    /// the stream with the Completion error
    /// `An error occurred on the server while streaming results. HubException: <message>`.
    pub fn try_stream_method<A, T, S, F>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        T: Serialize + Send + 'static,
        S: Stream<Item = Result<T, HubError>> + Send + 'static,
        F: Fn(Context, A) -> S + Send + Sync + 'static,
    {
        let handler = move |ctx: Context, raw: RawValue| {
            let args: A = codec::decode_args(&raw).map_err(BindError)?;
            let protocol = ctx.protocol();
            let items = f(ctx, args).map(move |item| {
                let item = item?;
                codec::to_raw(protocol, &item).map_err(|e| HubError::internal(e.to_string()))
            });
            Ok(Box::pin(items) as BoxStream<Result<RawValue, HubError>>)
        };
        self.inner
            .methods
            .insert(name.to_lowercase(), Method::Stream(Arc::new(handler)));
        self
    }

    /// Runs `f` when a client has completed its handshake, before any of its invocations. An
    /// error closes the client with `Connection closed with an error.` (plus
    /// ` HubException: <message>` for [`HubError::new`]); `on_disconnected` is then not called.
    pub fn on_connected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HubError>> + Send + 'static,
    {
        self.inner.on_connected = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Runs `f` when a connected client is gone: the service reported it closed (with its error
    /// text, if any), the app or the client closed it, it timed out, or the server connection
    /// carrying it was lost. Runs after the client's queued invocations.
    pub fn on_disconnected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context, Option<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner.on_disconnected = Some(Arc::new(move |ctx, err| Box::pin(f(ctx, err))));
        self
    }

    /// ASP.NET Core's `EnableDetailedErrors` (off by default): when on, error texts sent to
    /// clients also carry the details of non-`HubException` failures (binding errors, internal
    /// errors).
    pub fn detailed_errors(mut self, on: bool) -> Self {
        self.inner.detailed_errors = on;
        self
    }

    /// Finishes the hub.
    pub fn build(self) -> Hub {
        Hub {
            inner: Arc::new(self.inner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        let prefix = "An unexpected error occurred invoking 'Send' on the server.";
        assert_eq!(
            HubError::new("nope").client_text(prefix, false),
            format!("{prefix} HubException: nope")
        );
        assert_eq!(
            HubError::internal("db down").client_text(prefix, false),
            prefix
        );
        assert_eq!(
            HubError::internal("db down").client_text(prefix, true),
            format!("{prefix} Exception: db down")
        );
        let from_sdk: HubError = SdkError::NotConnected.into();
        assert!(!from_sdk.is_exposed());
        let from_str: HubError = "x".into();
        assert!(from_str.is_exposed());
    }

    #[test]
    fn lookup_is_case_insensitive() {
        let hub = Hub::builder()
            .method("Echo", |_ctx, (s,): (String,)| async move {
                Ok::<_, HubError>(s)
            })
            .stream_method("Count", |_ctx, (): ()| futures_util::stream::iter(0..3))
            .build();
        assert!(matches!(hub.method("echo"), Some(Method::Unary(_))));
        assert!(matches!(hub.method("ECHO"), Some(Method::Unary(_))));
        assert!(matches!(hub.method("count"), Some(Method::Stream(_))));
        assert!(hub.method("missing").is_none());
        assert!(format!("{hub:?}").contains("echo"));
    }
}
