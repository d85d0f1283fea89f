//! WebSocket upgrades: the socket leaves actix-http once the handshake is answered.
//!
//! actix-http hands every request it would upgrade (`Upgrade: websocket`, and `CONNECT`) with
//! its connection to the service built here instead of its dispatcher. That service asks the
//! same actix-web application as every other request (routing, middleware, authentication, the
//! handlers in [`client_ws`](super::client_ws) and [`server_ws`](super::server_ws)); a handler
//! that accepts the handshake answers with [`accept`], whose 101 response carries what to do
//! with the socket. The service writes the answer, then gives the TCP stream (and any bytes
//! already read after the request) to that callback, and the dispatcher ends — with it its
//! read and write buffers. Any other answer is written whole and the connection closed (an
//! upgrade request leaves no keep-alive connection behind, as with actix-http's own upgrade).

use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::body::{BodySize, to_bytes_limited};
use actix_http::h1::{Codec, Message};
use actix_http::{ConnectionType, Request, Response, StatusCode};
use actix_service::{IntoServiceFactory, Service, ServiceFactory, fn_factory, fn_service};
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::{HttpRequest, HttpResponse};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::io::HttpIo;
use crate::conn::stream::Stream;

/// The most of an answer to an upgrade request that is not an upgrade (an error's JSON body)
/// that is written.
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// How long writing the answer may take: a client that does not read it loses the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a refusal, how long what the client still sends is read and dropped until it closes,
/// so that unread input does not turn the close into a reset that loses the answer.
const LINGER: Duration = Duration::from_secs(1);

/// An upgraded connection: the stream and the bytes that followed the handshake request.
pub(crate) struct Upgraded {
    pub io: Stream,
    pub read: BytesMut,
}

/// What to do with the socket once the 101 answer is written (in the response's extensions).
struct OnUpgrade(Box<dyn FnOnce(Upgraded)>);

/// Accept the WebSocket handshake of `req`: the 101 answer, whose socket goes to `on_upgrade`
/// once written. If it is never written (the client left), `on_upgrade` is dropped unused.
/// A request that is no valid handshake gets actix-http's error answer (400).
pub(crate) fn accept(
    req: &HttpRequest,
    on_upgrade: impl FnOnce(Upgraded) + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    let mut response = actix_http::ws::handshake(req.head())?
        .finish()
        .map_into_boxed_body();
    response
        .extensions_mut()
        .insert(OnUpgrade(Box::new(on_upgrade)));
    Ok(HttpResponse::from(response))
}

/// The upgrade service of one worker: `make_app` builds the same application the worker serves
/// its other requests with.
pub(crate) fn service<F, T>(
    make_app: F,
) -> impl ServiceFactory<
    (Request, Framed<HttpIo, Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    F: Fn() -> actix_web::App<T> + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    fn_factory(move || {
        let factory = IntoServiceFactory::<_, Request>::into_factory(make_app());
        async move {
            let app = factory
                .new_service(AppConfig::default())
                .await
                .map_err(|()| {
                    tracing::error!("the upgrade service's application failed to start")
                })?;
            let app = Rc::new(app);
            Ok(fn_service(move |(req, framed)| {
                let app = app.clone();
                // Boxed: actix-http keeps this future inline in every connection's dispatcher
                // (sized by its largest state), upgraded or not.
                Box::pin(async move { upgrade(&*app, req, framed).await })
                    as Pin<Box<dyn Future<Output = Result<(), actix_web::Error>>>>
            }))
        }
    })
}

/// Answer one upgrade request through the application; hand the socket on if it accepted.
async fn upgrade<S>(
    app: &S,
    req: Request,
    mut framed: Framed<HttpIo, Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut response: Response<_> = match app.call(req).await {
        Ok(res) => res.into(),
        Err(err) => err.error_response().into(),
    };
    let on_upgrade = response.extensions_mut().remove::<OnUpgrade>();
    let (head, body) = response.into_parts();
    match on_upgrade {
        Some(OnUpgrade(on_upgrade)) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            timed(write(&mut framed, Message::Item((head, BodySize::None)))).await?;
            let parts = framed.into_parts();
            // Keep only what was read, not the dispatcher's buffer.
            let read = if parts.read_buf.is_empty() {
                BytesMut::new()
            } else {
                BytesMut::from(&parts.read_buf[..])
            };
            if let Some(io) = parts.io.into_stream() {
                on_upgrade(Upgraded { io, read });
            }
            Ok(())
        }
        _ => {
            let mut head = head;
            head.head_mut().set_connection_type(ConnectionType::Close);
            let body = match to_bytes_limited(body, MAX_REFUSAL_BODY).await {
                Ok(Ok(body)) => body,
                _ => bytes::Bytes::new(),
            };
            let size = if head.status() == StatusCode::SWITCHING_PROTOCOLS {
                BodySize::None
            } else {
                BodySize::Sized(body.len() as u64)
            };
            timed(async {
                write(&mut framed, Message::Item((head, size))).await?;
                if !body.is_empty() {
                    write(&mut framed, Message::Chunk(Some(body))).await?;
                }
                write(&mut framed, Message::Chunk(None)).await
            })
            .await?;
            let mut io = framed.into_parts().io;
            let _ = io.shutdown().await;
            let _ = tokio::time::timeout(LINGER, async {
                let mut scratch = [0u8; 1024];
                while matches!(io.read(&mut scratch).await, Ok(n) if n > 0) {}
            })
            .await;
            Ok(())
        }
    }
}

/// `write` within [`WRITE_TIMEOUT`].
async fn timed(write: impl Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Encode `item` and write it out.
async fn write(
    framed: &mut Framed<HttpIo, Codec>,
    item: Message<(Response<()>, BodySize)>,
) -> std::io::Result<()> {
    Pin::new(&mut *framed).write(item)?;
    poll_fn(|cx| Pin::new(&mut *framed).flush::<Message<(Response<()>, BodySize)>>(cx)).await
}
