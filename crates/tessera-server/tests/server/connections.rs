//! Connections that never finish their headers, idle ones, stalled uploads, and more of them
//! than the server serves at once: each is closed in bounded time and `/health` keeps answering.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads until the server closes the connection (or `limit` passes): what it sent, and when.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((String::from_utf8_lossy(&got).into_owned(), start.elapsed()));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_excess_connections_are_closed_in_bounded_time() {
    let f = start_with_connections(tessera_server::ConnectionLimits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        max_connections: 40,
    })
    .await;
    let addr = f.server.addr;
    // 60 clients that never finish their headers.
    let mut slow = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let sent = Instant::now();
    // A client over the limit gets a 503 it can act on (its request read first), not a
    // protocol error.
    assert_eq!(f.get("/health").await.0, 503);
    let mut refused = 0;
    let mut timed_out = 0;
    for s in &mut slow {
        let (answer, _) = until_closed(s, Duration::from_secs(5).saturating_sub(sent.elapsed()))
            .await
            .expect("every slow connection is closed within 5 s");
        let after = sent.elapsed();
        if answer.starts_with("HTTP/1.1 503") {
            refused += 1;
        } else {
            assert!(
                after >= Duration::from_millis(500),
                "closed after {after:?}"
            );
            timed_out += 1;
        }
    }
    assert_eq!(
        (refused, timed_out),
        (20, 40),
        "beyond 40 at once: 503 and closed"
    );
    assert_eq!(f.get("/health").await.0, 200);
    // Clients that connect and never send a byte get the header timeout too.
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let connected = Instant::now();
    for s in &mut silent {
        until_closed(
            s,
            Duration::from_secs(5).saturating_sub(connected.elapsed()),
        )
        .await
        .expect("a silent connection is closed after the header timeout");
    }
    assert!(connected.elapsed() >= Duration::from_millis(900));
    // A kept-alive connection that sends nothing more is closed.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut idle, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // An upload that stalls after its headers is closed after the idle timeout.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/pipelines HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nnodes:",
        )
        .await
        .unwrap();
    let (_, after) = until_closed(&mut stalled, Duration::from_secs(10))
        .await
        .expect("a stalled upload is closed");
    assert!(
        after >= Duration::from_millis(1500),
        "closed after {after:?}"
    );
    assert_eq!(f.get("/health").await.0, 200);
}
