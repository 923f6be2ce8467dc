//! With the `tower` feature: a [`Channel`] as a tower [`Service`] over raw HTTP/2 exchanges
//! (see `volley::tower`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use tower_service::Service;

use super::channel::Channel;
use crate::Status;
use crate::metadata::MetadataMap;
use crate::transport::{BoxError, ResponseBody, send_body};

impl<B> Service<http::Request<B>> for Channel
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Status;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, Status>> + Send>>;

    /// Always ready: the channel connects and picks when a request comes.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let channel = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let path_and_query = parts
                .uri
                .path_and_query()
                .cloned()
                .ok_or_else(|| Status::internal("the request URI has no path"))?;
            let metadata = MetadataMap::from_headers(parts.headers.clone());
            let make = || {
                let mut request = http::Request::new(());
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = channel.uri_with(path_and_query.clone());
                *request.headers_mut() = parts.headers.clone();
                request
            };
            let (response, mut send, done) = channel
                .open_stream(path_and_query.path(), &metadata, make, false, None)
                .await?;
            tokio::spawn(async move { send_body(&mut send, body).await });
            let response = response.await.map_err(|e| e.to_status())?;
            let mut done = done;
            Ok(response.map(|body| {
                ResponseBody::stream(
                    body,
                    Box::new(move |status, trailers| {
                        done.finish(status, &MetadataMap::from_headers(trailers.clone()));
                    }),
                )
            }))
        })
    }
}
