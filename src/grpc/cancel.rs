//! Tells a client's cancel from its half-close.
//!
//! tonic ends a request stream the same way (`Ok(None)`) whether the client
//! half-closed or reset the stream with CANCEL. [`WatchCancel`] wraps the
//! service and marks a [`ClientGone`] flag (in the request's extensions)
//! when the request body ends in an error, so a cancelled call leaves a
//! CANCELLED task instead of a completed one.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, Bytes, Service};
use tonic::server::NamedService;

/// Set once the request body failed (reset, disconnect).
#[derive(Clone, Debug, Default)]
pub struct ClientGone(Arc<AtomicBool>);

impl ClientGone {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Watched {
    inner: Body,
    gone: ClientGone,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.gone.0.store(true, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a gRPC service so its handlers can see [`ClientGone`].
#[derive(Clone)]
pub struct WatchCancel<S>(pub S);

impl<S> Service<http::Request<Body>> for WatchCancel<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let gone = ClientGone::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(gone.clone());
        let body = Body::new(Watched { inner: body, gone });
        self.0.call(http::Request::from_parts(parts, body))
    }
}

impl<S: NamedService> NamedService for WatchCancel<S> {
    const NAME: &'static str = S::NAME;
}
