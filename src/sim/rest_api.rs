//! The simulated Dhan REST API (spec dhan-v2 §4): authentication headers, rate limits (§5),
//! faults, request validation with Dhan's DH-905, routing to the books, and Dhan's response
//! envelopes and error shapes (Spring-style 404 for an unknown path).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value, json};

use super::faults::{Fault, Faults, Refusal};
use super::http::{HttpAction, HttpRequest, HttpResponse};
use super::limits::{SimLimits, class_of};
use super::order_socket::OrderBus;
use super::orders::{Book, BookError, NewOrder, SimNow, Source};
use super::prices::PriceBoard;
use super::render;
use super::validate::{parse_modify, parse_place};
use crate::broker::model::{OrderType, ProductType, Validity};
use crate::broker::ratelimit::ApiClass;
use crate::domain::{Clock, InstrumentKey, Paise, Qty, Segment, Txn};
use crate::instruments::{Instruments, limits as exchange, synthetic};

/// One request as the simulator received it (for tests; no header values, so no token).
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    /// When the server had the whole request (read and parsed, before any handler ran).
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: String,
    pub class: ApiClass,
    pub had_access_token: bool,
    pub client_id_header: Option<String>,
}

/// Everything the REST handlers share.
pub(crate) struct SimState {
    pub client_id: String,
    pub token: Arc<RwLock<String>>,
    pub order_by_id_as_array: bool,
    pub book: Mutex<Book>,
    pub limits: Mutex<SimLimits>,
    pub faults: Faults,
    pub prices: PriceBoard,
    pub bus: Arc<OrderBus>,
    pub clock: Arc<dyn Clock>,
    pub received: Mutex<Vec<ReceivedRequest>>,
    pub nudge: Sender<()>,
    pub instruments: Option<Arc<Instruments>>,
}

const BAD_INPUT: &str = "Missing required fields, bad values for parameters etc.";
const NO_ORDER: &str = "Incorrect request for order and cannot be processed";

fn dhan_error(status: u16, error_type: &str, code: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"errorType": error_type, "errorCode": code, "errorMessage": message}),
    )
}

fn bad_input(why: &str) -> HttpResponse {
    log::debug!(target: "sim", "DH-905: {why}");
    dhan_error(400, "Input_Exception", "DH-905", BAD_INPUT)
}

fn order_error(status: u16, message: &str) -> HttpResponse {
    dhan_error(status, "Order_Error", "DH-906", message)
}

fn gateway(status: u16, error: &str, path: &str, now: crate::domain::Timestamp) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"timestamp": now.to_ist_iso(), "status": status, "error": error, "path": path}),
    )
}

impl SimState {
    fn now(&self) -> SimNow {
        SimNow { mono: Instant::now(), wall: self.clock.now() }
    }

    pub fn handle(&self, req: HttpRequest) -> HttpAction {
        let class = class_of(&req.method, &req.path);
        self.received.lock().push(ReceivedRequest {
            at: req.received,
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            class,
            had_access_token: req.header("access-token").is_some(),
            client_id_header: req.header("client-id").map(str::to_string),
        });
        let Some(route) = req.path.strip_prefix("/v2").filter(|r| r.starts_with('/')) else {
            return HttpAction::Respond(gateway(404, "Not Found", &req.path, self.clock.now()));
        };
        // The instrument list is public data (spec dhan-v2 §8): no credentials needed.
        if let Some(segment) = route.strip_prefix("/instrument/")
            && req.method == "GET"
        {
            return HttpAction::Respond(self.instrument_list(segment));
        }
        if let Some(refusal) = self.authenticate(&req, class) {
            return HttpAction::Respond(refusal);
        }
        if !self.limits.lock().admit(class, Instant::now()) {
            return HttpAction::Respond(dhan_error(
                429,
                "Rate_Limit",
                "DH-904",
                "Too many requests on server from single user breaching rate limits. Try throttling API calls.",
            ));
        }
        let (fault, latency, withhold) = self.faults.for_request(&req.method, &req.path);
        let early = match fault {
            Some(Fault::ServerError) => Some(HttpAction::Respond(internal_error())),
            Some(Fault::Throttle) => Some(HttpAction::Respond(dhan_error(
                429,
                "Rate_Limit",
                "DH-904",
                "Too many requests on server from single user breaching rate limits. Try throttling API calls.",
            ))),
            Some(Fault::Reset) => Some(HttpAction::Reset),
            Some(Fault::Garbage) => Some(HttpAction::Respond(HttpResponse::raw(
                200,
                "<html><body>upstream hiccup</body></html>",
                "text/html",
            ))),
            _ => None,
        };
        if let Some(action) = early {
            log::debug!(target: "sim", "fault {fault:?} on {} {}", req.method, req.path);
            return with_latency(action, latency);
        }
        let response = self.route(&req, route);
        let action = match fault {
            Some(Fault::TimeoutAfterAccept) => {
                log::debug!(target: "sim", "withholding the answer to {} {}", req.method, req.path);
                HttpAction::Withhold(withhold)
            }
            Some(Fault::ServerErrorAfterAccept) => HttpAction::Respond(internal_error()),
            _ => HttpAction::Respond(response),
        };
        with_latency(action, latency)
    }

    fn authenticate(&self, req: &HttpRequest, class: ApiClass) -> Option<HttpResponse> {
        let token_ok = req.header("access-token").is_some_and(|t| t == self.token.read().as_str());
        let client = req.header("client-id");
        let client_ok = match client {
            Some(c) => c == self.client_id,
            // Data APIs require the header (spec §4.1).
            None => !matches!(class, ApiClass::Quote | ApiClass::Data),
        };
        if token_ok && client_ok {
            return None;
        }
        Some(dhan_error(
            401,
            "Invalid_Authentication",
            "DH-901",
            "Client ID or user generated access token is invalid or expired.",
        ))
    }

    fn route(&self, req: &HttpRequest, route: &str) -> HttpResponse {
        let parts: Vec<&str> = route.trim_end_matches('/').split('/').skip(1).collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("POST", ["orders"]) => self.place(&req.body),
            ("GET", ["orders"]) => self.list_orders(),
            ("GET", ["orders", "external", cid]) => self.order_by_correlation_id(cid),
            ("GET", ["orders", id]) => self.order_by_id(id),
            ("PUT", ["orders", id]) => self.modify(id, &req.body),
            ("DELETE", ["orders", id]) => self.cancel(id),
            ("GET", ["trades"]) => self.trades(None),
            ("GET", ["trades", id]) => self.trades(Some(id)),
            ("GET", ["positions"]) => self.positions(),
            ("DELETE", ["positions"]) => self.exit_all(),
            ("GET", ["fundlimit"]) => self.fund_limit(),
            ("POST", ["marketfeed", "ltp"]) => self.ltp(&req.body),
            ("POST", ["killswitch"]) => self.set_kill_switch(req.query("killSwitchStatus")),
            ("GET", ["killswitch"]) => self.kill_switch_status(),
            ("GET", ["profile"]) => HttpResponse::json(
                200,
                &json!({
                "dhanClientId": self.client_id, "tokenValidity": "simulated",
                "activeSegment": "Equity, Derivative", "ddpi": "Active", "mtf": "Active",
                "dataPlan": "Active", "dataValidity": "simulated"}),
            ),
            (
                _,
                ["orders", ..]
                | ["trades", ..]
                | ["positions"]
                | ["fundlimit"]
                | ["killswitch"]
                | ["profile"],
            ) => gateway(405, "Method Not Allowed", &req.path, self.clock.now()),
            _ => gateway(404, "Not Found", &req.path, self.clock.now()),
        }
    }

    /// `GET /v2/instrument/{exchangeSegment}`: the detailed CSV of one segment.
    fn instrument_list(&self, segment: &str) -> HttpResponse {
        let Some(segment) = Segment::from_name(segment) else {
            return bad_input(&format!("unknown exchange segment {segment:?}"));
        };
        let csv = match &self.instruments {
            Some(table) => synthetic::to_csv(table, Some(segment)),
            None => synthetic::to_csv(&Instruments::empty(), None),
        };
        HttpResponse::raw(200, csv, "text/csv")
    }

    /// The exchange's limits on a new order (spec dhan-v2 §8.2): a quantity that is not a lot
    /// multiple or above the freeze quantity is refused at the API (DH-905); a limit or trigger
    /// price off the tick or outside the band is accepted and then rejected by the exchange, as
    /// Dhan reports it (`RMS:` reason on a REJECTED order).
    fn exchange_check(&self, new: &NewOrder) -> Result<Option<String>, HttpResponse> {
        let Some(inst) = self.instruments.as_ref().and_then(|t| t.get(new.instrument)) else {
            return Ok(None);
        };
        let qty = Qty(new.quantity);
        if let Err(e) = exchange::check_lot(inst, qty) {
            log::debug!(target: "sim", "refusing {}: {e}", new.instrument);
            return Err(dhan_error(
                400,
                "Input_Exception",
                "DH-905",
                &format!("Quantity should be in multiples of lot size {}", inst.lot),
            ));
        }
        if let Err(e) = exchange::check_freeze(inst, qty) {
            log::debug!(target: "sim", "refusing {}: {e}", new.instrument);
            let freeze = inst.freeze.map_or(0, |f| f.0);
            return Err(dhan_error(
                400,
                "Input_Exception",
                "DH-905",
                &format!("Quantity exceeds the freeze quantity {freeze}"),
            ));
        }
        for price in [new.price, new.trigger_price] {
            if price.0 == 0 {
                continue;
            }
            match exchange::check_price(inst, price) {
                Ok(()) => {}
                Err(exchange::LimitError::OutsideBand { lower, upper, .. }) => {
                    return Ok(Some(format!(
                        "RMS:{}:Order Price needs to be Circuit Limits of {lower} - {upper}",
                        new.instrument.security_id
                    )));
                }
                Err(_) => {
                    return Ok(Some(format!(
                        "RMS:{}:Order Price is not a multiple of the tick size {}",
                        new.instrument.security_id, inst.tick
                    )));
                }
            }
        }
        Ok(None)
    }

    fn place(&self, body: &[u8]) -> HttpResponse {
        let new = match parse_place(body, &self.client_id) {
            Ok(n) => n,
            Err(why) => return bad_input(&why),
        };
        let exchange_rejects = match self.exchange_check(&new) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let refusal = self.faults.refusal_for(new.instrument, new.correlation_id.as_deref());
        let placed = match refusal {
            Some(Refusal::Api { status, error_type, code, message }) => {
                log::debug!(target: "sim", "refusing a placement: {code} {message}");
                return dhan_error(status, &error_type, &code, &message);
            }
            Some(Refusal::Exchange { reason }) => {
                self.book.lock().place_refused(new, Source::Api, self.now(), reason)
            }
            None => match exchange_rejects {
                Some(reason) => {
                    self.book.lock().place_refused(new, Source::Api, self.now(), reason)
                }
                None => self.book.lock().place(new, Source::Api, self.now()),
            },
        };
        match placed {
            Ok(o) => {
                self.bus.publish(&o);
                let _ = self.nudge.try_send(());
                HttpResponse::json(
                    200,
                    &json!({"orderId": o.order_id, "orderStatus": o.status.wire_upper()}),
                )
            }
            Err(BookError::KillSwitchActive) => order_error(
                400,
                "Kill switch is active: trading is disabled for the rest of the day",
            ),
            Err(e) => order_error(400, &format!("{e:?}")),
        }
    }

    fn modify(&self, id: &str, body: &[u8]) -> HttpResponse {
        let change = match parse_modify(body, &self.client_id, id) {
            Ok(c) => c,
            Err(why) => return bad_input(&why),
        };
        let r = self.book.lock().modify(id, change, self.now());
        match r {
            Ok(o) => {
                self.bus.publish(&o);
                HttpResponse::json(
                    200,
                    &json!({"orderId": o.order_id, "orderStatus": o.status.wire_upper()}),
                )
            }
            Err(BookError::TooManyModifications) => {
                order_error(400, "Maximum modifications for the order reached")
            }
            Err(_) => order_error(400, NO_ORDER),
        }
    }

    fn cancel(&self, id: &str) -> HttpResponse {
        let r = self.book.lock().cancel(id, self.now());
        match r {
            Ok(o) => {
                self.bus.publish(&o);
                HttpResponse::json(
                    202,
                    &json!({"orderId": o.order_id, "orderStatus": o.status.wire_upper()}),
                )
            }
            Err(BookError::InTransit) => order_error(400, "Order is in Transit state"),
            Err(_) => order_error(400, NO_ORDER),
        }
    }

    fn list_orders(&self) -> HttpResponse {
        let book = self.book.lock();
        let all: Vec<Value> =
            book.orders().iter().map(|o| render::order(o, &self.client_id)).collect();
        HttpResponse::json(200, &Value::Array(all))
    }

    fn order_by_id(&self, id: &str) -> HttpResponse {
        let book = self.book.lock();
        match book.order(id) {
            Some(o) if self.order_by_id_as_array => {
                HttpResponse::json(200, &json!([render::order(o, &self.client_id)]))
            }
            Some(o) => HttpResponse::json(200, &render::order(o, &self.client_id)),
            None => HttpResponse::json(200, &json!([])),
        }
    }

    fn order_by_correlation_id(&self, cid: &str) -> HttpResponse {
        let book = self.book.lock();
        match book.by_correlation_id(cid) {
            Some(o) => HttpResponse::json(200, &render::order(o, &self.client_id)),
            None => order_error(404, NO_ORDER),
        }
    }

    fn trades(&self, order: Option<&str>) -> HttpResponse {
        let book = self.book.lock();
        let all: Vec<Value> = book
            .trades()
            .iter()
            .filter(|t| order.is_none_or(|id| t.order_id == id))
            .map(|t| render::trade(t, &self.client_id))
            .collect();
        HttpResponse::json(200, &Value::Array(all))
    }

    fn positions(&self) -> HttpResponse {
        let book = self.book.lock();
        let all: Vec<Value> = book
            .positions()
            .iter()
            .map(|p| {
                render::position(p, self.prices.get(p.instrument).map(|(l, _)| l), &self.client_id)
            })
            .collect();
        HttpResponse::json(200, &Value::Array(all))
    }

    fn fund_limit(&self) -> HttpResponse {
        let book = self.book.lock();
        let utilized: i64 = book.positions().iter().map(|p| p.cost_price().0 * p.net().abs()).sum();
        let realized: Paise = book.positions().iter().map(|p| p.realized()).sum();
        HttpResponse::json(
            200,
            &render::fund_limit(
                &self.client_id,
                book.config().sod_limit,
                Paise(utilized),
                realized,
            ),
        )
    }

    /// `DELETE /positions`: cancels open orders and squares off every open position.
    fn exit_all(&self) -> HttpResponse {
        let now = self.now();
        let mut published = Vec::new();
        {
            let mut book = self.book.lock();
            let open: Vec<String> = book
                .orders()
                .iter()
                .filter(|o| o.is_open() && o.status != crate::broker::model::OrderStatus::Transit)
                .map(|o| o.order_id.clone())
                .collect();
            for id in open {
                if let Ok(o) = book.cancel(&id, now) {
                    published.push(o);
                }
            }
            let flat: Vec<(InstrumentKey, ProductType, i64)> = book
                .positions()
                .iter()
                .filter(|p| p.net() != 0)
                .map(|p| (p.instrument, p.product, p.net()))
                .collect();
            for (instrument, product, net) in flat {
                let new = NewOrder {
                    correlation_id: None,
                    instrument,
                    txn: if net > 0 { Txn::Sell } else { Txn::Buy },
                    product,
                    order_type: OrderType::Market,
                    validity: Validity::Day,
                    quantity: net.abs(),
                    disclosed_quantity: 0,
                    price: Paise::ZERO,
                    trigger_price: Paise::ZERO,
                };
                if let Ok(o) = book.place(new, Source::Api, now) {
                    published.push(o);
                }
            }
        }
        for o in &published {
            self.bus.publish(o);
        }
        let _ = self.nudge.try_send(());
        HttpResponse::json(
            202,
            &json!({"status": "SUCCESS", "message": "All orders and positions exited successfully"}),
        )
    }

    fn ltp(&self, body: &[u8]) -> HttpResponse {
        let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
            return bad_input("LTP body is not a JSON object");
        };
        let mut data: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        let mut count = 0;
        for (seg_name, ids) in &req {
            if seg_name == "dhanClientId" {
                continue;
            }
            let Some(segment) = Segment::from_name(seg_name) else {
                return bad_input(&format!("unknown segment {seg_name:?}"));
            };
            let Some(ids) = ids.as_array() else {
                return bad_input("security ids must be an array");
            };
            for id in ids {
                let id = match id {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                let Some(id) = id.and_then(|i| u32::try_from(i).ok()) else {
                    return bad_input("security id is not a number");
                };
                count += 1;
                if let Some((p, _)) = self.prices.get(InstrumentKey::new(segment, id)) {
                    data.entry(seg_name.clone())
                        .or_default()
                        .insert(id.to_string(), json!({"last_price": p.as_rupees_f64()}));
                }
            }
        }
        if count > crate::broker::rest::LTP_BATCH {
            return bad_input("more than 1000 instruments");
        }
        HttpResponse::json(200, &json!({"data": data, "status": "success"}))
    }

    fn set_kill_switch(&self, status: Option<&str>) -> HttpResponse {
        let activate = match status {
            Some("ACTIVATE") => true,
            Some("DEACTIVATE") => false,
            _ => return bad_input("killSwitchStatus must be ACTIVATE or DEACTIVATE"),
        };
        match self.book.lock().set_kill_switch(activate) {
            Ok(()) => HttpResponse::json(
                200,
                &json!({
                    "dhanClientId": self.client_id,
                    "killSwitchStatus": if activate { "Kill Switch has been successfully activated" } else { "Kill Switch has been successfully deactivated" },
                }),
            ),
            Err(_) => order_error(
                400,
                "Kill switch cannot be activated while positions or orders are open",
            ),
        }
    }

    fn kill_switch_status(&self) -> HttpResponse {
        let active = self.book.lock().kill_switch_active();
        HttpResponse::json(
            200,
            &json!({
                "dhanClientId": self.client_id,
                "killSwitchStatus": if active { "ACTIVATE" } else { "DEACTIVATE" },
            }),
        )
    }
}

fn internal_error() -> HttpResponse {
    dhan_error(500, "Internal_Server_Error", "DH-908", "Internal server error")
}

fn with_latency(action: HttpAction, latency: std::time::Duration) -> HttpAction {
    match action {
        HttpAction::Respond(r) if !latency.is_zero() => HttpAction::RespondAfter(r, latency),
        other => other,
    }
}
