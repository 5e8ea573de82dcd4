//! A local SMTP server for tests: it speaks enough of RFC 5321 for a real client (lettre) to
//! deliver to it, and keeps every message it receives. Start it on port 0, or on a given port to
//! model a mail server that comes up after being down.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use crate::free_port;
use std::time::Duration;

/// One message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body, dot-unstuffed).
    pub data: String,
}

/// A running sink; stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    stop: Arc<AtomicBool>,
}

impl SmtpSink {
    /// Starts on an ephemeral port.
    pub fn start() -> SmtpSink {
        Self::start_on(0)
    }

    /// Starts on `port` (0 for any).
    pub fn start_on(port: u16) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| unreachable!("bind {port}: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| unreachable!("{e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| unreachable!("{e}"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let r = r.clone();
                        std::thread::spawn(move || {
                            let _ = session(stream, &r);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SmtpSink { addr, received, stop }
    }

    /// `smtp://127.0.0.1:<port>`, for `PERMGATE_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn session(stream: TcpStream, received: &Mutex<Vec<ReceivedMail>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 permgate-testkit SMTP sink\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            out.write_all(b"250-permgate-testkit\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command[10..]);
            to.clear();
            out.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command[8..]));
            out.write_all(b"250 OK\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            received.lock().unwrap_or_else(PoisonError::into_inner).push(ReceivedMail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            out.write_all(b"250 OK queued\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 OK\r\n")?;
        } else {
            out.write_all(b"502 command not implemented\r\n")?;
        }
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map_or(arg, |(a, _)| a);
    inner.trim().to_owned()
}
