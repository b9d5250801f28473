//! The login check of `verify_gone`: the start of an AMQP 0-9-1 connection, up to the
//! server's answer to the credentials, and no further.
//!
//! The client sends the protocol header, reads `connection.start`, answers with
//! `connection.start-ok` (mechanism `PLAIN`, capability `authentication_failure_close`, so
//! that RabbitMQ says "refused" with `connection.close` 403 instead of only dropping the
//! socket) and reads one more method: `connection.tune` means the login was accepted,
//! `connection.close` with 403 `ACCESS_REFUSED` means it was refused. Anything else is an
//! error. The connection is dropped there (no virtual host is opened).
//!
//! The frame encoding and decoding are pure functions, tested below; [`try_login`] does the
//! IO. The password only ever goes into the `start-ok` frame.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The AMQP 0-9-1 protocol header.
pub(crate) const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

const FRAME_METHOD: u8 = 1;
const FRAME_END: u8 = 0xCE;
/// No frame before tuning is anywhere near this (RabbitMQ's `connection.start` is ~500 B).
const MAX_FRAME: u32 = 128 * 1024;

/// AMQP's reply code for refused access (a failed login).
pub(crate) const ACCESS_REFUSED: u16 = 403;

/// What the server said to the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    /// `connection.tune`: the credentials were accepted.
    Accepted,
    /// `connection.close` 403, with the server's text.
    Refused(String),
}

/// A connection-level method the probe understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    Start { mechanisms: String },
    Tune,
    Close { code: u16, text: String },
    Other { class: u16, method: u16 },
}

/// Why the probe could not tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeError {
    /// Connecting, reading or writing failed, or timed out.
    Io(String),
    /// The server said something the probe did not expect.
    Protocol(String),
}

/// One frame: type, channel, payload.
fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}

fn long_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

/// A field table from already encoded entries.
fn table(out: &mut Vec<u8>, entries: &[u8]) {
    long_bytes(out, entries);
}

/// `connection.start-ok` with PLAIN credentials, as a whole frame on channel 0.
pub(crate) fn start_ok(username: &str, password: &SecretString) -> Vec<u8> {
    let mut capabilities = Vec::new();
    short_str(&mut capabilities, "authentication_failure_close");
    capabilities.extend_from_slice(&[b't', 1]);
    let mut properties = Vec::new();
    short_str(&mut properties, "product");
    properties.push(b'S');
    long_bytes(&mut properties, b"kairos login check");
    short_str(&mut properties, "capabilities");
    properties.push(b'F');
    table(&mut properties, &capabilities);

    let mut payload = Vec::new();
    payload.extend_from_slice(&10u16.to_be_bytes());
    payload.extend_from_slice(&11u16.to_be_bytes());
    table(&mut payload, &properties);
    short_str(&mut payload, "PLAIN");
    let mut response = Vec::new();
    response.push(0);
    response.extend_from_slice(username.as_bytes());
    response.push(0);
    response.extend_from_slice(password.expose_secret().as_bytes());
    long_bytes(&mut payload, &response);
    short_str(&mut payload, "en_US");
    frame(FRAME_METHOD, 0, &payload)
}

/// Reads big-endian fields off a payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProbeError> {
        if self.buf.len() < n {
            return Err(ProbeError::Protocol("a method frame ends early".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ProbeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProbeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ProbeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn short_str(&mut self) -> Result<String, ProbeError> {
        let n = self.u8()?;
        Ok(String::from_utf8_lossy(self.take(usize::from(n))?).into_owned())
    }
    fn long_bytes(&mut self) -> Result<&'a [u8], ProbeError> {
        let n = self.u32()?;
        self.take(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// The connection method in a method frame's payload.
pub(crate) fn parse_method(payload: &[u8]) -> Result<Method, ProbeError> {
    let mut r = Reader { buf: payload };
    let class = r.u16()?;
    let method = r.u16()?;
    Ok(match (class, method) {
        (10, 10) => {
            r.take(2)?; // version major, minor
            r.long_bytes()?; // server properties
            let mechanisms = String::from_utf8_lossy(r.long_bytes()?).into_owned();
            Method::Start { mechanisms }
        }
        (10, 30) => Method::Tune,
        (10, 50) => {
            let code = r.u16()?;
            let text = r.short_str()?;
            Method::Close { code, text }
        }
        (class, method) => Method::Other { class, method },
    })
}

/// The frame header: type, channel, payload size; refuses what is not a frame.
pub(crate) fn parse_header(header: &[u8; 7]) -> Result<(u8, u16, u32), ProbeError> {
    if header.starts_with(b"AMQP") {
        return Err(ProbeError::Protocol(
            "the server answered with its own protocol header: it does not speak AMQP 0-9-1".into(),
        ));
    }
    let kind = header[0];
    let channel = u16::from_be_bytes([header[1], header[2]]);
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if size > MAX_FRAME {
        return Err(ProbeError::Protocol(format!(
            "a frame of {size} bytes before tuning; this is not an AMQP server"
        )));
    }
    Ok((kind, channel, size))
}

async fn read_method(stream: &mut TcpStream) -> Result<Option<Method>, ProbeError> {
    let io = |e: std::io::Error| ProbeError::Io(e.to_string());
    let mut header = [0u8; 7];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let (kind, _channel, size) = parse_header(&header)?;
    let mut payload = vec![0u8; usize::try_from(size).unwrap_or(0) + 1];
    stream.read_exact(&mut payload).await.map_err(io)?;
    if payload.pop() != Some(FRAME_END) {
        return Err(ProbeError::Protocol("a frame without its end octet".into()));
    }
    if kind != FRAME_METHOD {
        return Err(ProbeError::Protocol(format!(
            "frame type {kind} where a method was expected"
        )));
    }
    parse_method(&payload).map(Some)
}

/// Logs in as `username` with `password` at `host:port` and reports what the server said
/// (see the module docs). The whole exchange is bounded by `timeout`.
pub(crate) async fn try_login(
    host: &str,
    port: u16,
    username: &str,
    password: &SecretString,
    timeout: Duration,
) -> Result<Login, ProbeError> {
    tokio::time::timeout(timeout, exchange(host, port, username, password))
        .await
        .map_err(|_| {
            ProbeError::Io(format!(
                "no answer from {host}:{port} within {} s",
                timeout.as_secs_f32()
            ))
        })?
}

async fn exchange(
    host: &str,
    port: u16,
    username: &str,
    password: &SecretString,
) -> Result<Login, ProbeError> {
    let io = |e: std::io::Error| ProbeError::Io(format!("{host}:{port}: {e}"));
    let mut stream = TcpStream::connect((host, port)).await.map_err(io)?;
    stream.write_all(PROTOCOL_HEADER).await.map_err(io)?;
    match read_method(&mut stream).await? {
        Some(Method::Start { mechanisms }) => {
            if !mechanisms.split(' ').any(|m| m == "PLAIN") {
                return Err(ProbeError::Protocol(format!(
                    "the server does not offer PLAIN logins (it offers {mechanisms:?})"
                )));
            }
        }
        Some(other) => {
            return Err(ProbeError::Protocol(format!(
                "expected connection.start, got {other:?}"
            )));
        }
        None => {
            return Err(ProbeError::Protocol(
                "the server closed the connection before connection.start".into(),
            ));
        }
    }
    stream
        .write_all(&start_ok(username, password))
        .await
        .map_err(io)?;
    match read_method(&mut stream).await? {
        Some(Method::Tune) => Ok(Login::Accepted),
        Some(Method::Close { code, text }) if code == ACCESS_REFUSED => Ok(Login::Refused(text)),
        Some(Method::Close { code, text }) => Err(ProbeError::Protocol(format!(
            "the server closed the connection with {code} {text}"
        ))),
        Some(other) => Err(ProbeError::Protocol(format!(
            "expected connection.tune or connection.close, got {other:?}"
        ))),
        None => Err(ProbeError::Protocol(
            "the server closed the connection without answering the login".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn start_ok_carries_plain_credentials_and_the_failure_capability() {
        let f = start_ok("kairos_ab", &SecretString::from("pw1".to_owned()));
        assert_eq!(f[0], FRAME_METHOD);
        assert_eq!(&f[1..3], &[0, 0]);
        let size = u32::from_be_bytes([f[3], f[4], f[5], f[6]]) as usize;
        assert_eq!(f.len(), 7 + size + 1);
        assert_eq!(*f.last().unwrap(), FRAME_END);
        let payload = &f[7..7 + size];
        let mut r = Reader { buf: payload };
        assert_eq!((r.u16().unwrap(), r.u16().unwrap()), (10, 11));
        let props = r.long_bytes().unwrap();
        let needle = b"authentication_failure_close";
        assert!(props.windows(needle.len()).any(|w| w == needle));
        assert_eq!(r.short_str().unwrap(), "PLAIN");
        assert_eq!(r.long_bytes().unwrap(), b"\0kairos_ab\0pw1");
        assert_eq!(r.short_str().unwrap(), "en_US");
        assert!(r.buf.is_empty());
    }

    #[test]
    fn methods_are_read() {
        let mut start = vec![0, 10, 0, 10, 0, 9];
        start.extend_from_slice(&[0, 0, 0, 0]); // empty server properties
        long_bytes(&mut start, b"AMQPLAIN PLAIN");
        long_bytes(&mut start, b"en_US");
        assert_eq!(
            parse_method(&start).unwrap(),
            Method::Start {
                mechanisms: "AMQPLAIN PLAIN".into()
            }
        );
        assert_eq!(
            parse_method(&[0, 10, 0, 30, 0, 0, 0, 2, 0, 0, 0, 0]).unwrap(),
            Method::Tune
        );
        let mut close = vec![0, 10, 0, 50, 1, 147];
        short_str(&mut close, "ACCESS_REFUSED - Login was refused");
        close.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            parse_method(&close).unwrap(),
            Method::Close {
                code: 403,
                text: "ACCESS_REFUSED - Login was refused".into()
            }
        );
        assert_eq!(
            parse_method(&[0, 20, 0, 10]).unwrap(),
            Method::Other {
                class: 20,
                method: 10
            }
        );
        assert!(parse_method(&[0, 10, 0, 50, 1]).is_err());
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(parse_header(&[1, 0, 0, 0, 0, 1, 0]).unwrap(), (1, 0, 256));
        assert!(parse_header(b"AMQP\x00\x00\x09").is_err());
        assert!(parse_header(&[1, 0, 0, 0xff, 0, 0, 0]).is_err());
    }
}
