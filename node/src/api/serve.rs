//! The API's HTTP server: our own accept loop over hyper's HTTP/1.1, where
//! `axum::serve` has no bounds. At most `CONNECTIONS_MAX` connections are
//! open at once (one more is closed as soon as it is accepted), and a
//! connection that does not deliver a request's headers within
//! `HEADER_TIMEOUT`, whether it trickles them or sits idle between
//! requests, is closed. A response being streamed (events, an export) is
//! not cut: those are bounded by `gridshare_api::bounds::STREAMS_MAX`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// API connections open at once, at most.
pub const CONNECTIONS_MAX: usize = 256;
/// How long a connection may take to send a request's headers, or stay
/// idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before accepting again after the OS refused (out of
/// file descriptors, for one).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The bounds of a server; [`ServerLimits::default`] is the node's.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    pub connections_max: usize,
    pub header_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits { connections_max: CONNECTIONS_MAX, header_timeout: HEADER_TIMEOUT }
    }
}

/// Serves `router` on `listener` within `limits`, until dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: ServerLimits) {
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "cannot accept an API connection");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max = limits.connections_max, "API connection closed: too many open");
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "API connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// A server with `limits` for a route that answers "ok"; its address.
    async fn server(limits: ServerLimits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(listener, router, limits));
        address
    }

    /// Whether the server closed `stream` (it reads end of file) within
    /// `deadline`; `false` if it answered or kept it open.
    fn closed(stream: &mut TcpStream, deadline: Duration) -> bool {
        stream.set_read_timeout(Some(deadline)).unwrap();
        let mut byte = [0_u8; 1];
        match stream.read(&mut byte) {
            Ok(read) => read == 0,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    fn get(address: std::net::SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    /// A client that trickles its headers, or sits idle, is cut off after
    /// the header timeout; a prompt one is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_and_idle_clients_are_cut_off() {
        let limits = ServerLimits { connections_max: 8, header_timeout: Duration::from_millis(300) };
        let address = server(limits).await;
        tokio::task::spawn_blocking(move || {
            let mut slow = TcpStream::connect(address).unwrap();
            slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            assert!(closed(&mut slow, Duration::from_secs(10)), "a trickling client stays connected");
            let mut idle = TcpStream::connect(address).unwrap();
            assert!(closed(&mut idle, Duration::from_secs(10)), "an idle client stays connected");
            assert!(get(address).ends_with("ok"));
        })
        .await
        .unwrap();
    }

    /// Past the connection cap a new connection is closed at once; when one
    /// closes, a new one is served again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_are_closed() {
        let limits = ServerLimits { connections_max: 4, header_timeout: Duration::from_secs(60) };
        let address = server(limits).await;
        tokio::task::spawn_blocking(move || {
            let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(address).unwrap()).collect();
            // Each held connection is served: a request on it is answered.
            for stream in &mut held {
                stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
                let mut answer = [0_u8; 512];
                assert!(stream.read(&mut answer).unwrap() > 0);
            }
            let mut extra = TcpStream::connect(address).unwrap();
            assert!(closed(&mut extra, Duration::from_secs(10)), "a fifth connection is kept");
            drop(held.pop());
            // The slot is given back once the server sees the close.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let mut stream = TcpStream::connect(address).unwrap();
                stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.ends_with("ok") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the freed slot is not served again");
            }
        })
        .await
        .unwrap();
    }
}
