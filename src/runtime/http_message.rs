//! The messages of the project's HTTP/1.1 server ([`super::http_server`]): the parsed
//! request, the answer and what to do with it, parsing under the server's limits (with
//! `httparse`, `Content-Length` bodies only) and encoding an answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::http_server::Limits;

/// Header lines a request may have (more: 431).
const MAX_HEADERS: usize = 64;

/// One parsed request.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The path without the query string, percent-decoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// When the server had the whole request (its last byte read and parsed).
    pub received: Instant,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

impl HttpResponse {
    pub fn json(status: u16, v: &serde_json::Value) -> HttpResponse {
        HttpResponse { status, body: v.to_string().into_bytes(), content_type: "application/json" }
    }

    pub fn raw(status: u16, body: impl Into<Vec<u8>>, content_type: &'static str) -> HttpResponse {
        HttpResponse { status, body: body.into(), content_type }
    }

    pub(super) fn text(status: u16, body: &str) -> HttpResponse {
        HttpResponse::raw(status, body, "text/plain")
    }
}

/// What to do with a request.
#[derive(Clone, Debug)]
pub enum HttpAction {
    Respond(HttpResponse),
    /// Answer after `delay` (simulated latency).
    RespondAfter(HttpResponse, Duration),
    /// Close the connection with a TCP reset and no answer.
    Reset,
    /// Keep the connection open without answering for `hold`, then reset it: the client's
    /// timeout fires first.
    Withhold(Duration),
}

pub type Handler = dyn Fn(HttpRequest) -> HttpAction + Send + Sync;

pub enum Parsed {
    Partial,
    Bad(HttpResponse),
    Complete { request: HttpRequest, used: usize, keep_alive: bool },
}

/// Parses one request from the start of `input` under `limits`.
pub fn parse(input: &[u8], limits: &Limits, peer: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(input) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_header_bytes => n,
        Ok(httparse::Status::Partial) if input.len() <= limits.max_header_bytes => {
            return Parsed::Partial;
        }
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            let why = format!("request header over {} bytes", limits.max_header_bytes);
            return Parsed::Bad(HttpResponse::raw(431, why, "text/plain"));
        }
        Err(e) => {
            return Parsed::Bad(HttpResponse::raw(
                400,
                format!("malformed request: {e}"),
                "text/plain",
            ));
        }
    };
    let hdrs: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let find = |n: &str| hdrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if find("transfer-encoding").is_some() {
        return Parsed::Bad(HttpResponse::text(411, "Content-Length required"));
    }
    let len: usize = match find("content-length").map(|v| v.trim().parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= limits.max_body_bytes => n,
        Some(Ok(_)) => {
            let why = format!("body over {} bytes", limits.max_body_bytes);
            return Parsed::Bad(HttpResponse::raw(413, why, "text/plain"));
        }
        Some(Err(_)) => return Parsed::Bad(HttpResponse::text(400, "bad Content-Length")),
    };
    if input.len() < head_len + len {
        return Parsed::Partial;
    }
    let connection = find("connection").unwrap_or_default().to_ascii_lowercase();
    let keep_alive = if parsed.version == Some(0) {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let (path, query) = split_target(parsed.path.unwrap_or("/"));
    let request = HttpRequest {
        method: parsed.method.unwrap_or("").to_string(),
        path,
        query,
        body: input[head_len..head_len + len].to_vec(),
        headers: hdrs,
        peer,
        received: Instant::now(),
    };
    Parsed::Complete { request, used: head_len + len, keep_alive }
}

fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), query)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub(super) fn encode(r: &HttpResponse, keep_alive: bool) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    out
}

/// Every request in `input`, then the status of a bad one: the tests' view of [`parse`].
#[cfg(test)]
fn parse_all(
    mut input: &[u8],
    limits: &Limits,
) -> std::collections::VecDeque<Result<HttpRequest, u16>> {
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut out = std::collections::VecDeque::new();
    loop {
        match parse(input, limits, peer) {
            Parsed::Partial => return out,
            Parsed::Bad(r) => {
                out.push_back(Err(r.status));
                return out;
            }
            Parsed::Complete { request, used, .. } => {
                out.push_back(Ok(request));
                input = &input[used..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_decoded_query() {
        let (p, q) = split_target("/v2/killswitch?killSwitchStatus=ACTIVATE&x=a%20b");
        assert_eq!(p, "/v2/killswitch");
        assert_eq!(
            q,
            vec![("killSwitchStatus".into(), "ACTIVATE".into()), ("x".into(), "a b".into())]
        );
        assert_eq!(split_target("/v2/orders/external/A%20B").0, "/v2/orders/external/A B");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("abc%"), "abc%");
    }

    #[test]
    fn the_parser_answers_each_limit_with_its_status() {
        let limits = Limits { max_header_bytes: 100, max_body_bytes: 10, ..Limits::control(10) };
        let one = |text: &str| parse_all(text.as_bytes(), &limits).pop_front();
        let status = |text: &str| one(text).map(|r| r.map(|_| 200).unwrap_or_else(|s| s));
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), Some(200));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x"), None, "partial");
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(100))), Some(431));
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(90))), Some(431));
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), Some(413));
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Some(400));
        assert_eq!(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(411));
        assert_eq!(status("\x00\x01 garbage\r\n\r\n"), Some(400));
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc"), None, "body partial");
        let two = parse_all(
            b"POST /a?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\n\r\n",
            &limits,
        );
        let two: Vec<_> = two.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            (two[0].path.as_str(), two[0].query("x"), &two[0].body[..]),
            ("/a", Some("1"), &b"hi"[..])
        );
        assert_eq!(two[1].path, "/b");
    }
}
