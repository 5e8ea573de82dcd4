//! Limits a node puts on clients: slow headers, too many headers, slow bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use permgate_testkit::scratch_dir;

fn connect(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| unreachable!("{addr}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    stream
}

/// Reads until the server closes the connection; returns what it sent.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_clients_and_oversized_requests_are_cut_off() {
    let dir = scratch_dir("hardening");
    let node = crate::start(&dir.0, &[("PERMGATE_REQUEST_TIMEOUT", "1")]);

    // Headers that never end: the connection is closed after the header timeout (10 s).
    let started = Instant::now();
    let mut slow = connect(&node.base);
    let _ = slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    let answer = read_to_close(&mut slow);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(15), "closed after {took:?}: {answer}");

    // Too many headers: 431.
    let mut many = connect(&node.base);
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..150 {
        request.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let _ = many.write_all(request.as_bytes());
    let answer = read_to_close(&mut many);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A body sent slowly: 408 with the documented error body once the request timeout passes.
    let started = Instant::now();
    let mut dribble = connect(&node.base);
    let _ = dribble.write_all(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"method\":");
    let answer = read_to_close(&mut dribble);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":-2") && answer.contains("PERMGATE_REQUEST_TIMEOUT"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());

    // The node still serves everyone else.
    let mut fine = connect(&node.base);
    let _ = fine.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(read_to_close(&mut fine).starts_with("HTTP/1.1 200"));
}
