//! The operator's HTTP surface on a `tiny_http` server thread (loopback by default):
//! `GET /health`, `GET /metrics` (open), and the control API under `/v1/` which requires
//! `Authorization: Bearer <control token>`. This layer owns everything about HTTP — routing,
//! authentication, size limits, JSON parsing — so that a malformed, oversized or unauthorised
//! request gets its 4xx here and never reaches the engine. What a route *does* is the
//! [`OpsApi`] implementation's business.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::domain::Secret;
use crate::runtime::{Worker, WorkerCtx};

/// A route of the operator API that reaches the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Positions,
    Pnl,
    PlaceOrder,
    Halt,
    Resume,
    Flatten,
    /// `POST /v1/positions/{id}/retry-exit`: the position's rejected exit, once more, now.
    RetryExit(String),
}

/// A JSON answer with its HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    pub fn ok(body: Value) -> ApiResponse {
        ApiResponse { status: 200, body }
    }

    pub fn error(status: u16, message: impl Into<String>) -> ApiResponse {
        ApiResponse { status, body: json!({ "error": message.into() }) }
    }
}

/// What the engine provides to the HTTP surface.
pub trait OpsApi: Send + Sync + 'static {
    /// The health document and whether the engine is healthy (200) or not (503).
    fn health(&self) -> (bool, Value);
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// An authenticated control route; `body` is the parsed JSON body, if any.
    fn control(&self, route: Route, body: Option<Value>) -> ApiResponse;
}

/// Binds the listening socket (once, outside the worker, so a respawned worker reuses it).
pub fn bind(addr: &str) -> anyhow::Result<(Arc<Server>, SocketAddr)> {
    let server =
        Server::http(addr).map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let local = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow::anyhow!("HTTP listener on {addr} is not an IP socket"))?;
    Ok((Arc::new(server), local))
}

/// The HTTP worker: serves requests one at a time on its own thread.
pub struct HttpWorker {
    server: Arc<Server>,
    api: Arc<dyn OpsApi>,
    control_token: Secret,
    max_body_bytes: usize,
}

impl HttpWorker {
    pub fn new(
        server: Arc<Server>,
        api: Arc<dyn OpsApi>,
        control_token: Secret,
        max_body_bytes: usize,
    ) -> HttpWorker {
        HttpWorker { server, api, control_token, max_body_bytes }
    }

    fn handle(&self, mut req: Request) {
        let answer = self.answer(&mut req);
        let (status, content_type, body) = match answer {
            Answer::Json(r) => (r.status, "application/json", r.body.to_string()),
            Answer::Text(status, text) => (status, "text/plain; version=0.0.4", text),
        };
        let resp = Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", content_type));
        if let Err(e) = req.respond(resp) {
            log::debug!(target: "http", "Could not send response: {e}");
        }
    }

    fn answer(&self, req: &mut Request) -> Answer {
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let method = req.method().clone();
        match (path.as_str(), &method) {
            ("/health", Method::Get) => {
                let (healthy, doc) = self.api.health();
                Answer::Json(ApiResponse { status: if healthy { 200 } else { 503 }, body: doc })
            }
            ("/metrics", Method::Get) => Answer::Text(200, self.api.metrics()),
            ("/health" | "/metrics", _) => Answer::Json(ApiResponse::error(405, "use GET")),
            _ => {
                let Some((route, expected)) = route_of(&path) else {
                    return Answer::Json(ApiResponse::error(404, format!("no route {path}")));
                };
                if method != expected {
                    return Answer::Json(ApiResponse::error(405, format!("use {expected}")));
                }
                if !self.authorised(req) {
                    return Answer::Json(ApiResponse::error(401, "missing or wrong bearer token"));
                }
                match self.read_body(req) {
                    Ok(body) => Answer::Json(self.api.control(route, body)),
                    Err(resp) => Answer::Json(resp),
                }
            }
        }
    }

    fn authorised(&self, req: &Request) -> bool {
        let given = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
            .unwrap_or("");
        self.control_token.matches(given)
    }

    /// Reads and parses a JSON body of at most `max_body_bytes`.
    fn read_body(&self, req: &mut Request) -> Result<Option<Value>, ApiResponse> {
        if req.body_length().is_some_and(|n| n > self.max_body_bytes) {
            return Err(ApiResponse::error(
                413,
                format!("body over {} bytes", self.max_body_bytes),
            ));
        }
        let mut buf = Vec::new();
        let limit = self.max_body_bytes as u64 + 1;
        if let Err(e) = req.as_reader().take(limit).read_to_end(&mut buf) {
            return Err(ApiResponse::error(400, format!("cannot read body: {e}")));
        }
        if buf.len() > self.max_body_bytes {
            return Err(ApiResponse::error(
                413,
                format!("body over {} bytes", self.max_body_bytes),
            ));
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| ApiResponse::error(400, format!("body is not valid JSON: {e}")))
    }
}

impl Worker for HttpWorker {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        while !ctx.should_stop() {
            ctx.beat();
            crate::runtime::failpoint::hit("http.loop");
            match self.server.recv_timeout(ctx.beat_every()) {
                Ok(Some(req)) => self.handle(req),
                Ok(None) => {}
                Err(e) => {
                    log::warn!(target: "http", "Accepting a request failed: {e}");
                }
            }
        }
        Ok(())
    }
}

enum Answer {
    Json(ApiResponse),
    Text(u16, String),
}

fn route_of(path: &str) -> Option<(Route, Method)> {
    Some(match path {
        "/v1/positions" => (Route::Positions, Method::Get),
        "/v1/pnl" => (Route::Pnl, Method::Get),
        "/v1/orders" => (Route::PlaceOrder, Method::Post),
        "/v1/halt" => (Route::Halt, Method::Post),
        "/v1/resume" => (Route::Resume, Method::Post),
        "/v1/flatten" => (Route::Flatten, Method::Post),
        _ => {
            let id = path.strip_prefix("/v1/positions/")?.strip_suffix("/retry-exit")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            (Route::RetryExit(id.to_string()), Method::Post)
        }
    })
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_routes_have_one_method_each() {
        assert_eq!(route_of("/v1/halt"), Some((Route::Halt, Method::Post)));
        assert_eq!(route_of("/v1/positions"), Some((Route::Positions, Method::Get)));
        assert_eq!(route_of("/v1/nope"), None);
        assert_eq!(
            route_of("/v1/positions/P-7/retry-exit"),
            Some((Route::RetryExit("P-7".into()), Method::Post))
        );
        assert_eq!(route_of("/v1/positions//retry-exit"), None);
        assert_eq!(route_of("/v1/positions/a/b/retry-exit"), None);
    }
}
