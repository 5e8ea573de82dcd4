//! A Redis reachability check for `/readyz`: connect, authenticate if the URL carries a password,
//! `PING`, expect `+PONG`, all within a short deadline. Plain RESP over TCP; no client library.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(2);

/// Host, port and optional credentials from `redis://[user[:password]@]host[:port][/db]`.
fn parse(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let rest = url.strip_prefix("redis://").ok_or_else(|| format!("`{url}` is not a redis:// URL"))?;
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    let (user, password) = match auth.map(|a| a.split_once(':').unwrap_or(("", a))) {
        Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), (!p.is_empty()).then(|| p.to_owned())),
        None => (None, None),
    };
    if host.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    let addr = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        host.to_owned()
    } else {
        format!("{host}:6379")
    };
    Ok((addr, user, password))
}

fn command(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    out
}

/// Succeeds when Redis answers `PING` with `PONG`.
pub async fn ping(url: &str) -> Result<(), String> {
    let (addr, user, password) = parse(url)?;
    let attempt = async {
        let stream = TcpStream::connect(&addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        if let Some(password) = &password {
            let auth = match &user {
                Some(u) => command(&["AUTH", u, password]),
                None => command(&["AUTH", password]),
            };
            stream.get_mut().write_all(&auth).await.map_err(|e| e.to_string())?;
            stream.read_line(&mut line).await.map_err(|e| e.to_string())?;
            if !line.starts_with("+OK") {
                return Err(format!("AUTH refused: {}", line.trim()));
            }
            line.clear();
        }
        stream.get_mut().write_all(&command(&["PING"])).await.map_err(|e| e.to_string())?;
        stream.read_line(&mut line).await.map_err(|e| e.to_string())?;
        if line.starts_with("+PONG") { Ok(()) } else { Err(format!("unexpected answer to PING: {}", line.trim())) }
    };
    match tokio::time::timeout(DEADLINE, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("{addr} did not answer within {DEADLINE:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_address_and_credentials() {
        assert_eq!(parse("redis://127.0.0.1:6379"), Ok(("127.0.0.1:6379".into(), None, None)));
        assert_eq!(parse("redis://cache/2"), Ok(("cache:6379".into(), None, None)));
        assert_eq!(parse("redis://:pw@cache:6380/0"), Ok(("cache:6380".into(), None, Some("pw".into()))));
        assert_eq!(parse("redis://u:pw@cache"), Ok(("cache:6379".into(), Some("u".into()), Some("pw".into()))));
        assert!(parse("http://cache").is_err());
        assert!(parse("redis://").is_err());
    }

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(command(&["PING"]), b"*1\r\n$4\r\nPING\r\n".to_vec());
    }
}
