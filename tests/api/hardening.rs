//! Issue 12: what a client (or a careless operator) sends cannot stop the service, strand a
//! machine or leak a secret. Connections, registry races, deleting a strategy that holds
//! machines, the shim's token file.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, eventually};

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// True once the service has closed `stream` (end of file or reset); bytes it sent before are
/// read and dropped.
fn closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn count_closed(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|s| closed(s)).count()
}

async fn health(app: &TestApp) -> u16 {
    // A fresh client: a new connection each time, as a health probe makes.
    reqwest::Client::new()
        .get(app.url("/health"))
        .send()
        .await
        .expect("health answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn silent_half_sent_and_idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.server.header_read_timeout_seconds = 1.0).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(connect(app.addr).await);
    }
    for _ in 0..10 {
        let mut s = connect(app.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: ohfp\r\nX-Slow: ")
            .await
            .unwrap();
        streams.push(s);
    }
    for _ in 0..5 {
        let mut s = connect(app.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: ohfp\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "a whole request is answered");
        streams.push(s);
    }
    eventually("all 25 connections closed by the service", || async {
        (count_closed(&streams) == streams.len()).then_some(())
    })
    .await;
    assert_eq!(health(&app).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connections_make_room_and_health_answers() {
    let app = TestApp::spawn_with(|c| {
        c.server.header_read_timeout_seconds = 300.0;
        c.server.max_connections = 16;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..40 {
        streams.push(connect(app.addr).await);
    }
    // Each connection over the cap closed the oldest idle one.
    eventually("the 24 oldest connections closed", || async {
        (count_closed(&streams[..24]) == 24).then_some(())
    })
    .await;
    assert_eq!(count_closed(&streams[24..]), 0, "the 16 newest stay");
    for _ in 0..5 {
        assert_eq!(health(&app).await, 200, "a new client is served at the cap");
    }
    app.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_refused_with_503() {
    let app = TestApp::spawn_with(|c| c.server.max_connections = 2).await;
    // Two requests whose bodies never come: both connections are busy in their handler.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = connect(app.addr).await;
        s.write_all(
            b"POST /api/v1/providers HTTP/1.1\r\nHost: ohfp\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        busy.push(s);
    }
    let refused = eventually("a third connection refused", || async {
        let res = reqwest::Client::new()
            .get(app.url("/health"))
            .send()
            .await
            .ok()?;
        (res.status() == 503).then_some(res)
    })
    .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    drop(busy);
    eventually("health served once the busy clients left", || async {
        (health(&app).await == 200).then_some(())
    })
    .await;
    app.stop().await;
}
