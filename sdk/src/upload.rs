//! Client-to-server ("upload") streams: the items a client sends as StreamItem messages for one of
//! the `streamIds` of its Invocation, handed to an upload method as a typed [`Stream`].
//!
//! The connection actor owns the sending side (one bounded channel per stream id, capacity
//! [`HubServerOptions::stream_buffer_capacity`](super::HubServerOptions::stream_buffer_capacity));
//! this module owns the receiving side and the decoding of each item with serde.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::HubError;
use super::codec;
use crate::protocol::RawValue;

/// One upload-stream event from the connection actor: an item, or the client's (or the
/// connection's) error ending the stream.
pub(crate) type UploadItem = Result<RawValue, String>;

/// The untyped receiving side of one upload stream.
pub(crate) type UploadReceiver = mpsc::Receiver<UploadItem>;

/// A stream of items the client uploads, decoded as `T`.
///
/// It ends when the client completes the stream. An `Err` item means the client completed the
/// stream with an error, the connection closed (`The underlying connection was closed.`), or an
/// item could not be deserialised as `T`; the stream ends after it.
pub struct UploadStream<T> {
    rx: UploadReceiver,
    done: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T> UploadStream<T> {
    pub(crate) fn new(rx: UploadReceiver) -> Self {
        Self {
            rx,
            done: false,
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for UploadStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Stream for UploadStream<T> {
    type Item = Result<T, HubError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(raw))) => match codec::from_raw::<T>(&raw) {
                Ok(item) => Poll::Ready(Some(Ok(item))),
                Err(err) => {
                    self.done = true;
                    self.rx.close();
                    Poll::Ready(Some(Err(HubError::internal(format!(
                        "Failed to bind Stream message. {err}"
                    )))))
                }
            },
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                self.rx.close();
                Poll::Ready(Some(Err(HubError::new(error))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn items_then_end_or_error() {
        let (tx, rx) = mpsc::channel(4);
        let mut s = UploadStream::<u32>::new(rx);
        tx.send(Ok(RawValue::Json(Bytes::from_static(b"1"))))
            .await
            .unwrap();
        tx.send(Ok(RawValue::MessagePack(Bytes::from_static(b"\x02"))))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(s.next().await, Some(Ok(1)));
        assert_eq!(s.next().await, Some(Ok(2)));
        assert_eq!(s.next().await, None);

        let (tx, rx) = mpsc::channel(4);
        let mut s = UploadStream::<u32>::new(rx);
        tx.send(Ok(RawValue::Json(Bytes::from_static(b"\"x\""))))
            .await
            .unwrap();
        assert!(s.next().await.unwrap().is_err());
        assert_eq!(s.next().await, None);

        let (tx, rx) = mpsc::channel(4);
        let mut s = UploadStream::<u32>::new(rx);
        tx.send(Err("boom".into())).await.unwrap();
        assert_eq!(s.next().await, Some(Err(HubError::new("boom"))));
        assert_eq!(s.next().await, None);
    }
}
