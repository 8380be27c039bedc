//! DNS over TCP with the bounds hickory's own listener lacks: at most `-tcp-max-connections`
//! client connections at once (more are closed at accept and counted), and each connection
//! gets `-tcp-idle-timeout` to send a whole query (so a client that sends a length prefix and
//! stalls is dropped) and to read a reply. Queries of one connection are answered in order by
//! the same [`DnsHandler`] as UDP; connections never wait on each other.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::handler::DnsHandler;
use common::net::BoundedListener;

/// The TCP side of one server.
#[derive(Debug)]
pub struct TcpServer {
    pub handler: DnsHandler,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// Connections closed at accept because the limit was reached.
    pub refused: IntCounter,
    /// Connections open now.
    pub open: IntGauge,
}

impl TcpServer {
    /// Accepts and serves connections until `shutdown`; then stops accepting, lets each
    /// connection finish the query it is answering, and returns when all are closed.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let listener = BoundedListener::new(
            listener,
            "DNS over TCP (-tcp-max-connections)",
            self.max_connections,
            Some(self.refused.clone()),
        );
        let mut connections = JoinSet::new();
        while let Some((stream, peer, slot)) = listener.accept(&shutdown).await {
            while connections.try_join_next().is_some() {}
            let connection = Connection {
                handler: self.handler.clone(),
                peer,
                idle_timeout: self.idle_timeout,
                open: OpenGuard::new(self.open.clone(), slot),
            };
            connections.spawn(connection.run(stream, shutdown.clone()));
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }
}

/// Holds a connection's slot and keeps the open-connections gauge while it lives.
struct OpenGuard {
    gauge: IntGauge,
    _slot: OwnedSemaphorePermit,
}

impl OpenGuard {
    fn new(gauge: IntGauge, slot: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        Self { gauge, _slot: slot }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One client connection.
struct Connection {
    handler: DnsHandler,
    peer: SocketAddr,
    idle_timeout: Duration,
    open: OpenGuard,
}

impl Connection {
    async fn run(self, mut stream: TcpStream, shutdown: CancellationToken) {
        let _open = &self.open;
        loop {
            let frame = tokio::select! {
                () = shutdown.cancelled() => return,
                frame = tokio::time::timeout(self.idle_timeout, read_frame(&mut stream)) => frame,
            };
            let query = match frame {
                Ok(Ok(Some(query))) => query,
                Ok(Ok(None)) => return,
                Ok(Err(error)) => {
                    tracing::debug!(client = %self.peer, %error, "TCP read failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %self.peer, "TCP client idle or stalled: closing");
                    return;
                }
            };
            let Some(reply) = respond(&self.handler, query, self.peer).await else {
                continue;
            };
            let Ok(len) = u16::try_from(reply.len()) else {
                tracing::debug!(client = %self.peer, len = reply.len(), "TCP reply too large");
                return;
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            match tokio::time::timeout(self.idle_timeout, stream.write_all(&framed)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(client = %self.peer, %error, "TCP write failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %self.peer, "TCP client does not read: closing");
                    return;
                }
            }
        }
    }
}

/// Reads one length-prefixed message; `None` at a clean end of stream. The buffer grows with
/// what arrives, so a client announcing 64 KiB and sending nothing costs nothing.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match reader.read(&mut len[..1]).await? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut len[1..]).await?,
    };
    let len = usize::from(u16::from_be_bytes(len));
    let mut message = Vec::with_capacity(len.min(4096));
    let limit = u64::try_from(len).map_err(io::Error::other)?;
    reader.take(limit).read_to_end(&mut message).await?;
    if message.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside a message",
        ));
    }
    Ok(Some(message))
}

/// The reply to one query as hickory's server would give it: nothing for fewer than 12 bytes
/// or for a response (no reflection), FORMERR for an undecodable message, else the handler's.
async fn respond(handler: &DnsHandler, query: Vec<u8>, peer: SocketAddr) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(&query)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let responder = Responder::default();
    match Request::from_bytes(query, peer, Protocol::Tcp) {
        Ok(request) => {
            handler
                .handle_request::<_, TokioTime>(&request, responder.clone())
                .await;
        }
        Err(error) => {
            tracing::debug!(client = %peer, %error, "undecodable TCP query: FORMERR");
            let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            responder.clone().send_response(response).await.ok()?;
        }
    }
    responder.take()
}

/// Collects the encoded reply of one request.
#[derive(Debug, Clone, Default)]
struct Responder {
    reply: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Responder {
    fn take(&self) -> Option<Vec<u8>> {
        self.reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                // As hickory does: a bare SERVFAIL instead of a reply that cannot be encoded.
                tracing::warn!(%error, "cannot encode a TCP reply: SERVFAIL");
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                let mut encoder = BinEncoder::new(&mut bytes);
                header
                    .emit(&mut encoder)
                    .map_err(|e| NetError::from(e.to_string()))?;
                ResponseInfo::from(header)
            }
        };
        *self
            .reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_or_not_at_all() {
        let read = |bytes: &'static [u8]| async move { read_frame(&mut &bytes[..]).await };
        assert_eq!(read(b"").await.unwrap(), None);
        assert_eq!(read(b"\x00\x03abc").await.unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read(b"\x00\x00").await.unwrap(), Some(Vec::new()));
        assert!(read(b"\x00").await.is_err());
        assert!(read(b"\xff\xffabc").await.is_err());
    }
}
