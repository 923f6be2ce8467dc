//! `Response<T>`: a message (or a stream of them) with response headers and trailers.

use crate::metadata::MetadataMap;

/// A response: the message (or stream of messages), the custom metadata sent as response
/// headers, and the custom metadata sent in the trailers.
#[derive(Debug)]
pub struct Response<T> {
    metadata: MetadataMap,
    message: T,
    trailers: MetadataMap,
    extensions: http::Extensions,
}

impl<T> Response<T> {
    /// A response with no metadata.
    pub fn new(message: T) -> Response<T> {
        Response {
            metadata: MetadataMap::new(),
            message,
            trailers: MetadataMap::new(),
            extensions: http::Extensions::new(),
        }
    }

    pub(crate) fn from_parts(
        metadata: MetadataMap,
        message: T,
        trailers: MetadataMap,
    ) -> Response<T> {
        Response {
            metadata,
            message,
            trailers,
            extensions: http::Extensions::new(),
        }
    }

    pub(crate) fn into_parts(self) -> (MetadataMap, T, MetadataMap) {
        (self.metadata, self.message, self.trailers)
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Takes the message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// The custom metadata of the response headers.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The custom metadata of the response headers, to add to on the server.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// The custom metadata of the trailers. On the client, filled in for unary and
    /// client-streaming calls; for streamed responses use [`crate::Streaming::trailers`].
    pub fn trailers(&self) -> &MetadataMap {
        &self.trailers
    }

    /// The custom metadata of the trailers, to add to on the server.
    pub fn trailers_mut(&mut self) -> &mut MetadataMap {
        &mut self.trailers
    }

    /// Typed values about the response that are not sent (on the client, for example
    /// [`crate::MessageCompressed`]).
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Compresses this response's messages with `encoding` (`None`: not at all) in place of
    /// the server's `send_compressed`, when the client accepts that algorithm; a client that
    /// does not gets the messages uncompressed. Server side only, and only on a server that
    /// compresses at all (`ServerBuilder::send_compressed` set: only then does it read what
    /// the client accepts). Default: the server's choice.
    pub fn set_compression(&mut self, encoding: Option<crate::CompressionEncoding>) {
        self.extensions
            .insert(crate::codec::CallCompression(encoding));
    }

    /// The extensions, to change.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Replaces the message with the result of `f`, keeping the metadata.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            metadata: self.metadata,
            message: f(self.message),
            trailers: self.trailers,
            extensions: self.extensions,
        }
    }
}
