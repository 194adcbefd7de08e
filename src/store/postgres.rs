//! The PostgreSQL backend (`postgres` crate; TLS as `sslmode` asks, see [`super::pg_tls`]). A [`PgStore`] is one connection, owned
//! by the thread that opened it (the write-behind worker opens its own on its thread).
//!
//! Connections never resolve names through the driver: a hostname in the URL is resolved here
//! with the standard library and handed over as an address, because the driver's own lookup
//! starts a background thread. Connects have an explicit timeout, and sockets a TCP user
//! timeout and keepalives, so that a dead server shows up as an error instead of a hang.
//!
//! Tables live in the connection's schema: `public` by default, or the schema named in
//! [`PgOptions::schema`] (created if missing), which lets tests share one database.

use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::Host;
use postgres::config::SslMode;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Statement};

use super::backend::Backend;
use super::pg_tls;
use super::sql::{self, Reader, Value};
use super::{ApplyOutcome, Connector, MIGRATIONS, Store, StoreError, StoreEvent};
use crate::config::{PgSslMode, PgTls, split_tls};

const BACKEND: &str = "postgres";

/// How to connect, beyond the URL.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The schema to keep the tables in (`None`: the server's default, `public`).
    pub schema: Option<String>,
    pub connect_timeout: Duration,
    /// How long sent data may stay unacknowledged before the connection counts as dead.
    pub tcp_user_timeout: Duration,
    /// The server cancels a statement running longer than this.
    pub statement_timeout: Duration,
    pub application_name: String,
    /// The password (`PGPASSWORD` from the secrets); a URL never carries one.
    pub password: Option<crate::config::Secret>,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            schema: None,
            connect_timeout: Duration::from_secs(3),
            tcp_user_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(15),
            application_name: "scalper".to_string(),
            password: None,
        }
    }
}

/// A PostgreSQL store: one connection.
pub struct PgStore {
    client: Client,
    target: String,
    claim_many: Statement,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("target", &self.target).finish_non_exhaustive()
    }
}

const CLAIM_MANY: &str = "INSERT INTO applied_events (event_id, kind, at) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) \
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id";

/// Sorts a driver error into "try again later" and "this data is refused".
fn classify(doing: &str, e: postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // The driver's text says what failed ("error performing TLS handshake"), its source
        // why ("invalid peer certificate: UnknownIssuer"). Neither carries the password.
        None => match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    };
    let transient = match e.as_db_error() {
        // Connection exceptions, resources, operator intervention (shutdown, cancel), system
        // errors, serialization failures and deadlocks: a retry may succeed.
        Some(db) => {
            let code = db.code().code();
            ["08", "53", "57", "58", "40", "3D"].iter().any(|class| code.starts_with(class))
        }
        None => {
            let text = e.to_string();
            e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
                || [
                    "error connecting",
                    "timeout",
                    "error communicating",
                    "unexpected message",
                    "authentication",
                ]
                .iter()
                .any(|needle| text.contains(needle))
        }
    };
    if transient {
        StoreError::Unavailable { backend: BACKEND, doing: doing.to_string(), detail }
    } else {
        StoreError::Rejected { backend: BACKEND, doing: doing.to_string(), detail }
    }
}

/// Appends `sql` with its `$n` placeholders replaced by the literals of `params`.
///
/// The applied statements of a batch travel as one multi-statement text (one round trip for
/// the whole batch; a prepared execute per statement costs a round trip each, 3 to 4 times
/// slower here). Literals are safe by construction: integers are printed, text is quoted with
/// `'` doubled under `standard_conforming_strings = on` (set on every connection, so a
/// backslash is an ordinary character), and text with a NUL character, which PostgreSQL
/// cannot store, is refused.
fn inline(sql: &str, params: &[Value], out: &mut String) -> Result<(), String> {
    let mut rest = sql;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let digits = rest[pos + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[pos + 1..pos + 1 + digits]
            .parse()
            .map_err(|_| format!("statement has a bare $: {sql}"))?;
        let value = n
            .checked_sub(1)
            .and_then(|i| params.get(i))
            .ok_or_else(|| format!("statement wants ${n}, {} parameters given", params.len()))?;
        match value {
            Value::Int(Some(i)) => out.push_str(&i.to_string()),
            Value::Int(None) | Value::Text(None) => out.push_str("NULL"),
            Value::Text(Some(t)) => {
                if t.contains('\0') {
                    return Err(format!("text {t:?} contains a NUL character"));
                }
                out.push('\'');
                out.push_str(&t.replace('\'', "''"));
                out.push('\'');
            }
        }
        rest = &rest[pos + 1 + digits..];
    }
    out.push_str(rest);
    Ok(())
}

fn boxed(params: &[Value]) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(t) => Box::new(t.clone()),
            }
        })
        .collect()
}

fn refs(b: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    b.iter().map(|p| p.as_ref()).collect()
}

struct PgRow<'a>(&'a postgres::Row);

impl sql::Row for PgRow<'_> {
    fn int(&self, idx: usize) -> Result<Option<i64>, String> {
        self.0.try_get::<_, Option<i64>>(idx).map_err(|e| e.to_string())
    }

    fn text(&self, idx: usize) -> Result<Option<String>, String> {
        self.0.try_get::<_, Option<String>>(idx).map_err(|e| e.to_string())
    }
}

/// Whether `name` can be a schema name as written (no quoting needed).
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// The URL's target without credentials, for logs and errors.
fn describe(cfg: &Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{}:{}/{}", hosts.join(","), port, cfg.get_dbname().unwrap_or(""))
}

/// Parses `url` (a `postgresql://` URL or `key=value` pairs) into a driver config with our
/// timeouts, hostnames resolved to addresses. The TLS options are checked and dropped: a
/// connection with `NoTls` from this config is plain (or refused under `sslmode=require`).
pub fn config(url: &str, opts: &PgOptions) -> Result<Config, StoreError> {
    config_and_tls(url, opts).map(|(cfg, _)| cfg)
}

/// [`config`] and the TLS options (`sslmode`, `sslrootcert`) of `url`.
pub fn config_and_tls(url: &str, opts: &PgOptions) -> Result<(Config, PgTls), StoreError> {
    let (url, tls) =
        split_tls(url).map_err(|e| StoreError::Config(format!("the PostgreSQL URL: {e}")))?;
    // The driver's parse error can quote the input, which may hold a password: keep it out.
    let mut cfg = Config::from_str(&url).map_err(|_| {
        StoreError::Config("the PostgreSQL URL does not parse (expected postgresql://USER@HOST:PORT/DB or key=value pairs)".to_string())
    })?;
    if let Some(schema) = &opts.schema
        && !valid_schema(schema)
    {
        return Err(StoreError::Config(format!(
            "PostgreSQL schema {schema:?} must be lowercase letters, digits and _"
        )));
    }
    cfg.connect_timeout(opts.connect_timeout)
        .tcp_user_timeout(opts.tcp_user_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .application_name(&opts.application_name)
        .options(&format!("-c statement_timeout={}", opts.statement_timeout.as_millis()))
        .ssl_mode(match tls.mode {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Prefer => SslMode::Prefer,
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => SslMode::Require,
        });
    if let Some(pw) = &opts.password {
        cfg.password(pw.expose());
    }
    if cfg.get_hostaddrs().is_empty() {
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let mut addrs = Vec::new();
        for host in cfg.get_hosts() {
            if let Host::Tcp(name) = host {
                let ip = match name.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => (name.as_str(), port)
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .map(|a| a.ip())
                        .ok_or_else(|| StoreError::Unavailable {
                            backend: BACKEND,
                            doing: format!("resolving {name}"),
                            detail: "no address found".into(),
                        })?,
                };
                addrs.push(ip);
            }
        }
        // Addresses only make sense one per host; Unix socket hosts need none.
        if addrs.len() == cfg.get_hosts().len() {
            for ip in addrs {
                cfg.hostaddr(ip);
            }
        }
    }
    Ok((cfg, tls))
}

impl PgStore {
    /// Connects, selects (and creates) the schema, and applies pending migrations.
    pub fn connect(url: &str, opts: &PgOptions) -> Result<PgStore, StoreError> {
        let (cfg, tls) = config_and_tls(url, opts)?;
        let target = describe(&cfg);
        let doing = format!("connecting to {target}");
        let connector = pg_tls::connector(&tls).map_err(StoreError::Config)?;
        let mut client = match connector {
            None => cfg.connect(NoTls),
            Some(tls) => cfg.connect(tls),
        }
        .map_err(|e| classify(&doing, e))?;
        if let Some(schema) = &opts.schema {
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
                ))
                .map_err(|e| classify(&format!("selecting schema {schema}"), e))?;
        }
        migrate(&mut client)?;
        // Inlined literals rely on it (it is the default since PostgreSQL 9.1).
        client
            .batch_execute("SET standard_conforming_strings = on")
            .map_err(|e| classify("configuring the session", e))?;
        let claim_many =
            client.prepare(CLAIM_MANY).map_err(|e| classify("preparing statements", e))?;
        log::info!(target: "store", "connected to PostgreSQL at {target}");
        Ok(PgStore { client, target, claim_many })
    }

    /// The server and database this store writes to (no credentials).
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// Applies every migration not yet in `schema_migrations`, under an advisory lock so that two
/// processes starting together do not both apply one.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let doing = "migrating the schema";
    let mut tx = client.transaction().map_err(|e| classify(doing, e))?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(727274, hashtext(current_schema()));
         CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,
             name TEXT NOT NULL, applied_at BIGINT NOT NULL);",
    )
    .map_err(|e| classify(doing, e))?;
    let done: HashSet<i64> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .map_err(|e| classify(doing, e))?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    for &(version, name, text) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        let doing = format!("applying migration {version} ({name})");
        tx.batch_execute(text).map_err(|e| classify(&doing, e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&version, &name, &chrono::Utc::now().timestamp_millis()],
        )
        .map_err(|e| classify(&doing, e))?;
        log::info!(target: "store", "postgres: applied migration {version} ({name})");
    }
    tx.commit().map_err(|e| classify(doing, e))
}

impl Backend for PgStore {
    const NAME: &'static str = BACKEND;

    fn write_events(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError> {
        let doing = format!("applying {} events", events.len());
        let ids: Vec<i64> = events.iter().map(|e| e.id.0).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
        let ats: Vec<i64> = events.iter().map(|e| e.at.0).collect();
        let mut tx = self.client.transaction().map_err(|e| classify(&doing, e))?;
        // One round trip claims every id; only the ids claimed now are applied.
        let mut fresh: HashSet<i64> = tx
            .query(&self.claim_many, &[&ids, &kinds, &ats])
            .map_err(|e| classify(&doing, e))?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        let mut outcome = ApplyOutcome::default();
        let mut script = String::with_capacity(events.len() * 400);
        for ev in events {
            // `remove`: the same event twice in one batch is applied once.
            if !fresh.remove(&ev.id.0) {
                outcome.duplicates += 1;
                continue;
            }
            for op in sql::event_ops(ev) {
                inline(op.sql, &op.params, &mut script).map_err(|detail| StoreError::Rejected {
                    backend: BACKEND,
                    doing: format!("applying event {} ({})", ev.id, ev.kind.name()),
                    detail,
                })?;
                script.push_str(";\n");
            }
            outcome.applied += 1;
        }
        if !script.is_empty() {
            tx.batch_execute(&script).map_err(|e| classify(&doing, e))?;
        }
        tx.commit().map_err(|e| classify(&doing, e))?;
        Ok(outcome)
    }

    fn round_trip(&mut self) -> Result<(), StoreError> {
        self.client.simple_query("SELECT 1").map(|_| ()).map_err(|e| classify("pinging", e))
    }

    fn each_row(
        &mut self,
        table: &'static str,
        text: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Reader<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let b = boxed(params);
        let rows = self
            .client
            .query(text, &refs(&b))
            .map_err(|e| classify(&format!("reading {table}"), e))?;
        rows.iter().try_for_each(|row| each(&Reader { backend: BACKEND, table, row: &PgRow(row) }))
    }

    /// One `REPEATABLE READ` transaction: every statement of `read` sees the same snapshot.
    fn snapshot<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(|e| classify("starting the recovery read", e))?;
        let result = read(self);
        let end = self
            .client
            .batch_execute("COMMIT")
            .map_err(|e| classify("ending the recovery read", e));
        let value = result?;
        end?;
        Ok(value)
    }
}

/// A connector for the writer: each call opens a new connection on the calling thread.
pub fn connector(url: impl Into<String>, opts: PgOptions) -> Connector {
    let url = url.into();
    Arc::new(move || PgStore::connect(&url, &opts).map(|s| Box::new(s) as Box<dyn Store>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_literals_are_quoted_and_placeholders_replaced_by_number() {
        let params = [
            Value::Text(Some("it's \\ here".into())),
            Value::Int(Some(-5)),
            Value::Int(None),
            Value::Text(None),
        ];
        let mut out = String::new();
        inline("f($1, $2, $3, $4, $2)", &params, &mut out).unwrap();
        assert_eq!(out, "f('it''s \\ here', -5, NULL, NULL, -5)");
        let mut out = String::new();
        let many: Vec<Value> = (1..=11).map(|i| Value::Int(Some(i))).collect();
        inline("($11, $1, $10)", &many, &mut out).unwrap();
        assert_eq!(out, "(11, 1, 10)");
        assert!(inline("($2)", &params[..1], &mut String::new()).is_err());
        assert!(inline("($1)", &[Value::Text(Some("a\0b".into()))], &mut String::new()).is_err());
    }

    #[test]
    fn schema_names_must_need_no_quoting() {
        for ok in ["public", "t_1", "_x", "scalper_test_ab12"] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "1x", "Upper", "a-b", "a;drop", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn hostnames_become_addresses_and_timeouts_are_set() {
        let cfg = config("postgresql://u@localhost:5999/db", &PgOptions::default()).unwrap();
        assert_eq!(cfg.get_hostaddrs().len(), 1);
        assert!(cfg.get_hostaddrs()[0].is_loopback());
        assert_eq!(cfg.get_connect_timeout(), Some(&Duration::from_secs(3)));
        let ip = config("postgresql://u@127.0.0.1:5999/db", &PgOptions::default()).unwrap();
        assert_eq!(ip.get_hostaddrs(), &["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn a_bad_url_error_does_not_echo_the_url() {
        let err = config("postgresql://u:s3cret@[::1:5432/db", &PgOptions::default()).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
