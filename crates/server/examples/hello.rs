//! The HTTP baseline of `bench/http.sh`: hyper's HTTP/1 server on the same runtime permgate uses,
//! answering every request `200 ok` and doing nothing else. What it serves per second is the
//! most any hyper-based server can on this machine; permgate's decision API and gateway are
//! measured against it in the same run.
//!
//! `cargo run --release -p permgate-server --example hello -- 127.0.0.1:19001`

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:19001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hello-world hyper server on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
