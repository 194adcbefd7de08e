//! The operator's HTTP surface (loopback by default): `GET /health`, `GET /metrics` (open),
//! and the control API under `/v1/` which requires `Authorization: Bearer <control token>`.
//! This layer owns everything about HTTP — routing, authentication, JSON parsing — on the
//! project's hardened server ([`crate::runtime::http_server`], which enforces the size, time
//! and connection limits), so that a malformed, oversized or unauthorised request gets its 4xx
//! here and never reaches the engine. What a route *does* is the [`OpsApi`] implementation's
//! business.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::domain::Secret;
pub use crate::runtime::http_server::Limits;
use crate::runtime::http_server::{self, HttpAction, HttpListener, HttpRequest, HttpResponse};
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

/// The listening socket of the control server.
pub type Server = HttpListener;

/// Binds the listening socket (once, outside the worker, so a respawned worker reuses it).
pub fn bind(addr: &str) -> anyhow::Result<(Arc<Server>, SocketAddr)> {
    let at: SocketAddr =
        addr.parse().map_err(|e| anyhow::anyhow!("HTTP address {addr:?} is not ip:port: {e}"))?;
    let server = HttpListener::bind(at)
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let local = server.addr();
    Ok((Arc::new(server), local))
}

/// The HTTP worker: runs the server loop on its own thread (with its fixed pool of handler
/// threads) and beats while it serves.
pub struct HttpWorker {
    server: Arc<Server>,
    api: Arc<dyn OpsApi>,
    control_token: Secret,
    limits: Limits,
}

impl HttpWorker {
    pub fn new(
        server: Arc<Server>,
        api: Arc<dyn OpsApi>,
        control_token: Secret,
        max_body_bytes: usize,
    ) -> HttpWorker {
        HttpWorker { server, api, control_token, limits: Limits::control(max_body_bytes) }
    }

    /// Other limits than [`Limits::control`] (tests shrink the timeouts).
    pub fn with_limits(mut self, limits: Limits) -> HttpWorker {
        self.limits = limits;
        self
    }
}

/// Answers one request (on a handler thread of the server).
fn handle(api: &dyn OpsApi, token: &Secret, req: &HttpRequest) -> HttpResponse {
    let (status, content_type, body) = match answer(api, token, req) {
        Answer::Json(r) => (r.status, "application/json", r.body.to_string()),
        Answer::Text(status, text) => (status, "text/plain; version=0.0.4", text),
    };
    HttpResponse::raw(status, body, content_type)
}

fn answer(api: &dyn OpsApi, token: &Secret, req: &HttpRequest) -> Answer {
    let (path, method) = (req.path.as_str(), req.method.as_str());
    match (path, method) {
        ("/health", "GET") => {
            let (healthy, doc) = api.health();
            Answer::Json(ApiResponse { status: if healthy { 200 } else { 503 }, body: doc })
        }
        ("/metrics", "GET") => Answer::Text(200, api.metrics()),
        ("/health" | "/metrics", _) => Answer::Json(ApiResponse::error(405, "use GET")),
        _ => {
            let Some((route, expected)) = route_of(path) else {
                return Answer::Json(ApiResponse::error(404, format!("no route {path}")));
            };
            if method != expected {
                return Answer::Json(ApiResponse::error(405, format!("use {expected}")));
            }
            let given = req.header("authorization").and_then(|v| v.strip_prefix("Bearer "));
            if !token.matches(given.unwrap_or("")) {
                return Answer::Json(ApiResponse::error(401, "missing or wrong bearer token"));
            }
            match parse_body(&req.body) {
                Ok(body) => Answer::Json(api.control(route, body)),
                Err(resp) => Answer::Json(resp),
            }
        }
    }
}

/// A control request's body (its size the server has already limited): nothing (empty or
/// blank) or one JSON value; anything else is a 400.
pub fn parse_body(body: &[u8]) -> Result<Option<Value>, ApiResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiResponse::error(400, format!("body is not valid JSON: {e}")))
}

impl Worker for HttpWorker {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let (api, token) = (self.api.clone(), self.control_token.clone());
        let handler = move |req: HttpRequest| HttpAction::Respond(handle(&*api, &token, &req));
        let limits = Limits { tick: ctx.beat_every(), ..self.limits.clone() };
        let go_on = || {
            ctx.beat();
            crate::runtime::failpoint::hit("http.loop");
            !ctx.should_stop()
        };
        http_server::serve(&self.server, &limits, "http", &handler, go_on)
            .map_err(|e| anyhow::anyhow!("serving HTTP: {e}"))
    }
}

enum Answer {
    Json(ApiResponse),
    Text(u16, String),
}

/// The control route at `path` and the one method it answers.
pub fn route_of(path: &str) -> Option<(Route, &'static str)> {
    Some(match path {
        "/v1/positions" => (Route::Positions, "GET"),
        "/v1/pnl" => (Route::Pnl, "GET"),
        "/v1/orders" => (Route::PlaceOrder, "POST"),
        "/v1/halt" => (Route::Halt, "POST"),
        "/v1/resume" => (Route::Resume, "POST"),
        "/v1/flatten" => (Route::Flatten, "POST"),
        _ => {
            let id = path.strip_prefix("/v1/positions/")?.strip_suffix("/retry-exit")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            (Route::RetryExit(id.to_string()), "POST")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_routes_have_one_method_each() {
        assert_eq!(route_of("/v1/halt"), Some((Route::Halt, "POST")));
        assert_eq!(route_of("/v1/positions"), Some((Route::Positions, "GET")));
        assert_eq!(route_of("/v1/nope"), None);
        assert_eq!(
            route_of("/v1/positions/P-7/retry-exit"),
            Some((Route::RetryExit("P-7".into()), "POST"))
        );
        assert_eq!(route_of("/v1/positions//retry-exit"), None);
        assert_eq!(route_of("/v1/positions/a/b/retry-exit"), None);
    }
}
