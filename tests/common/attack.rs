//! What hostile or careless clients do to a server, made with raw sockets and a raw
//! HTTP/2 client: requests whose body never comes, connections that idle, framing a
//! well-behaved library would never send.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const ISSUE_PATH: &str = "/coupon.v1.CouponService/IssueCoupon";

/// An HTTP/2 connection (h2c, prior knowledge) and the streams open on it.
pub struct H2Client {
    pub sender: h2::client::SendRequest<Bytes>,
    /// Ends when the server closes the connection (e.g. GOAWAY after idling).
    pub connection: JoinHandle<Result<(), h2::Error>>,
    /// Streams whose request body was announced and never sent.
    pub open_streams: Vec<h2::SendStream<Bytes>>,
}

impl H2Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        Self {
            sender,
            connection: tokio::spawn(connection),
            open_streams: Vec::new(),
        }
    }

    /// Opens `count` IssueCoupon streams with headers only: no body, no end of stream.
    pub async fn open_bodyless_streams(&mut self, addr: SocketAddr, count: usize) {
        for _ in 0..count {
            let request = http::Request::post(format!("http://{addr}{ISSUE_PATH}"))
                .header("content-type", "application/json")
                .body(())
                .expect("request");
            let ready = self.sender.clone().ready();
            let mut sender = tokio::time::timeout(Duration::from_secs(5), ready)
                .await
                .expect("a stream slot within 5 s")
                .expect("connection alive");
            let (_response, stream) = sender.send_request(request, false).expect("stream");
            self.open_streams.push(stream);
        }
    }

    /// Whether the server closed the connection within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, &mut self.connection)
            .await
            .is_ok()
    }
}

/// An HTTP/1.1 connection that sent an IssueCoupon head announcing `length` body bytes,
/// and none of them.
pub async fn h1_bodyless_request(addr: SocketAddr, length: u64) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {ISSUE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

/// Sends raw bytes on a new connection and returns what the server answered before it
/// closed the connection or went quiet for `limit`.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_response(&mut stream, limit).await
}

/// Reads one response head and whatever body follows within `limit`.
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => {
                bytes.extend_from_slice(&buffer[..n]);
                if complete_response(&bytes) {
                    break;
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A response head with a Content-Length whose body has fully arrived.
fn complete_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|length| body.len() >= length)
}

/// An HTTP/2 connection from a client that sends the preface and its settings, then
/// neither reads nor writes again: it never acknowledges a PING or a GOAWAY.
pub async fn h2_silent_connection(addr: SocketAddr) -> TcpStream {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(PREFACE).await.expect("preface");
    stream.write_all(&SETTINGS).await.expect("settings");
    stream
}
