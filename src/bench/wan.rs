//! A WAN link of the benchmark's own: a TCP proxy in front of a server (the extraction benchmark's
//! Postgres) that delays the data passing through it by a one-way latency in each direction and caps
//! each connection's rate per direction, as a link between regions behaves (the kernel here has no
//! `netem`). Each direction of a connection is a reader, which stamps every chunk with its arrival
//! time and reads on, and a writer, which sends each chunk once its arrival time plus the latency
//! has passed and its token bucket holds the chunk's bytes: chunks in flight overlap, so the stream
//! is delayed, not made to wait for one round trip per chunk.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};

/// What the link does to each connection, in each direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WanLink {
    /// Added to every byte's trip one way (a round trip gets twice it).
    pub one_way: Duration,
    /// Bytes per second each connection may carry in each direction.
    pub bytes_per_second: u64,
}

impl WanLink {
    /// A link between regions: 20 ms round trip, 8 MB/s per connection.
    pub const BETWEEN_REGIONS: WanLink = WanLink {
        one_way: Duration::from_millis(10),
        bytes_per_second: 8_000_000,
    };

    /// The round trip the link adds, in milliseconds.
    pub fn round_trip_ms(&self) -> f64 {
        2.0 * self.one_way.as_secs_f64() * 1000.0
    }
}

/// The largest chunk read at once, and the most a token bucket sends at once.
const CHUNK: usize = 16 * 1024;
/// Chunks queued between a direction's reader and its writer: what the link buffers before the
/// sender feels back-pressure (256 KiB, about 30 ms at 8 MB/s).
const QUEUED_CHUNKS: usize = 16;

/// A running proxy; dropping it closes its listener and every connection through it.
pub struct WanProxy {
    address: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
    connections: tokio::sync::watch::Receiver<usize>,
}

impl WanProxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr, link: WanLink) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| io_error("the WAN proxy cannot listen", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| io_error("the WAN proxy has no address", e))?;
        let (count, connections) = tokio::sync::watch::channel(0usize);
        let accepting = tokio::spawn(async move {
            // Owned here: aborting this task aborts every connection's tasks too.
            let mut tasks = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        count.send_modify(|n| *n += 1);
                        tasks.spawn(connection(client, upstream, link));
                    }
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
        });
        Ok(Self {
            address,
            accepting,
            connections,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.borrow()
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> Result<String> {
        let mut parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid(format!("the WAN proxy cannot read the source URL: {e}")))?;
        let refused = || Error::invalid("the WAN proxy cannot rewrite the source URL");
        parsed
            .set_host(Some(&self.address.ip().to_string()))
            .map_err(|_| refused())?;
        parsed
            .set_port(Some(self.address.port()))
            .map_err(|_| refused())?;
        Ok(parsed.to_string())
    }
}

impl Drop for WanProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// The address of the server a `postgres://` URL names (port 5432 when it names none).
pub async fn upstream_of(url: &str) -> Result<SocketAddr> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid(format!("the WAN proxy cannot read the source URL: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| Error::invalid("the WAN proxy needs a source URL with a host"))?
        .to_string();
    let port = parsed.port().unwrap_or(5432);
    let resolved = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| io_error("the WAN proxy cannot resolve the source's host", e))?
        .next()
        .ok_or_else(|| Error::invalid(format!("the source's host {host} has no address")));
    resolved
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Storage, format!("{what}: {e}"))
}

/// One client's connection: both directions through the link until either side closes.
async fn connection(client: TcpStream, upstream: SocketAddr, link: WanLink) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Small messages (a query, its reply) go at once: the link's latency is the only delay.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut directions = JoinSet::new();
    directions.spawn(direction(client_read, server_write, link));
    directions.spawn(direction(server_read, client_write, link));
    while directions.join_next().await.is_some() {}
}

/// One direction: a reader stamping chunks as they arrive, a writer sending each at its time.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: WanLink) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let reader = async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buffer[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` tells the writer the stream ended.
    };
    let writer = async move {
        let mut bucket = TokenBucket::new(link.bytes_per_second);
        while let Some((arrived, chunk)) = rx.recv().await {
            tokio::time::sleep_until(arrived + link.one_way).await;
            bucket.take(chunk.len()).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A token bucket of `rate` bytes per second holding at most one chunk's worth: a connection sends
/// no faster than the rate, over any stretch longer than a chunk's time.
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn new(bytes_per_second: u64) -> Self {
        let capacity = CHUNK as f64;
        Self {
            rate: bytes_per_second.max(1) as f64,
            capacity,
            tokens: capacity,
            updated: Instant::now(),
        }
    }

    /// Wait until `bytes` tokens are there, and take them (a debt a chunk larger than the bucket
    /// leaves is paid by waiting before the next).
    async fn take(&mut self, bytes: usize) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate).min(self.capacity);
        self.updated = now;
        let want = bytes as f64;
        if self.tokens < want.min(self.capacity) {
            let wait = (want.min(self.capacity) - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            let now = Instant::now();
            self.tokens += now.duration_since(self.updated).as_secs_f64() * self.rate;
            self.updated = now;
        }
        self.tokens -= want;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that echoes what it reads, on a free port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        address
    }

    /// A server that sends `bytes` bytes (a pattern) to whoever connects, then closes.
    async fn sending_server(bytes: usize) -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
                    let _ = socket.write_all(&data).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        address
    }

    const FAST: WanLink = WanLink {
        one_way: Duration::from_millis(25),
        bytes_per_second: 1_000_000_000,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adds_its_latency_to_each_round_trip() {
        let proxy = WanProxy::start(echo_server().await, FAST).await.unwrap();
        let mut socket = TcpStream::connect(proxy.address()).await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut trips = Vec::new();
        for i in 0..5u8 {
            let t0 = std::time::Instant::now();
            socket.write_all(&[i; 10]).await.unwrap();
            let mut back = [0u8; 10];
            socket.read_exact(&mut back).await.unwrap();
            trips.push(t0.elapsed());
            assert_eq!(back, [i; 10]);
        }
        // 25 ms each way: each round trip takes at least 50 ms (and not ten times it).
        for t in &trips {
            assert!(*t >= Duration::from_millis(50), "{trips:?}");
            assert!(*t < Duration::from_millis(500), "{trips:?}");
        }
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delays_a_stream_without_making_it_wait_per_chunk() {
        // 4 MB at a fast rate: 25 ms of latency is added once, not once per 16 KiB chunk (256 times).
        let bytes = 4 << 20;
        let proxy = WanProxy::start(sending_server(bytes).await, FAST).await.unwrap();
        let t0 = std::time::Instant::now();
        let mut socket = TcpStream::connect(proxy.address()).await.unwrap();
        let mut received = Vec::new();
        socket.read_to_end(&mut received).await.unwrap();
        let took = t0.elapsed();
        assert_eq!(received.len(), bytes);
        assert!(
            received.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
            "bytes intact"
        );
        assert!(took >= Duration::from_millis(25), "{took:?}");
        assert!(
            took < Duration::from_secs(2),
            "lockstep would take 6.4 s: {took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn caps_each_connection_and_direction_at_its_rate() {
        // 2 MB/s: 1 MB takes about 0.5 s on each of two connections at once (each has its own cap),
        // and an echo carries 256 KB each way, both directions capped.
        let link = WanLink {
            one_way: Duration::from_millis(1),
            bytes_per_second: 2_000_000,
        };
        let bytes = 1_000_000;
        let proxy = WanProxy::start(sending_server(bytes).await, link).await.unwrap();
        let t0 = std::time::Instant::now();
        let read_all = |address: SocketAddr| async move {
            let mut socket = TcpStream::connect(address).await.unwrap();
            let mut received = Vec::new();
            socket.read_to_end(&mut received).await.unwrap();
            received
        };
        let (a, b) = tokio::join!(read_all(proxy.address()), read_all(proxy.address()));
        let took = t0.elapsed();
        for r in [&a, &b] {
            assert_eq!(r.len(), bytes);
            assert!(
                r.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
                "bytes intact"
            );
        }
        assert!(took >= Duration::from_millis(400), "capped: {took:?}");
        assert!(
            took < Duration::from_millis(1500),
            "per connection, not shared: {took:?}"
        );

        let echo = WanProxy::start(echo_server().await, link).await.unwrap();
        let mut socket = TcpStream::connect(echo.address()).await.unwrap();
        let sent: Vec<u8> = (0..256_000).map(|i| (i % 13) as u8).collect();
        let t0 = std::time::Instant::now();
        let (mut r, mut w) = socket.split();
        let write = async {
            w.write_all(&sent).await.unwrap();
        };
        let mut back = vec![0u8; sent.len()];
        let read = r.read_exact(&mut back);
        let (_, read) = tokio::join!(write, read);
        read.unwrap();
        let took = t0.elapsed();
        assert_eq!(back, sent);
        // Each direction alone would take 0.128 s; in series through two buckets not much more.
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn rewrites_a_url_to_go_through_it() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let proxy = WanProxy::start(echo_server().await, FAST).await.unwrap();
            let port = proxy.address().port();
            assert_eq!(
                proxy
                    .url_through("postgres://u:p@db.example:5432/x?sslmode=disable")
                    .unwrap(),
                format!("postgres://u:p@127.0.0.1:{port}/x?sslmode=disable")
            );
            assert_eq!(
                upstream_of("postgres://u@127.0.0.1/x").await.unwrap(),
                "127.0.0.1:5432".parse().unwrap()
            );
        });
    }
}
