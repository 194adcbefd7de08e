//! TLS to the databases: a private PostgreSQL with `ssl = on` and a private `redis-server`
//! with a TLS port, both started here on free loopback ports with a certificate from a CA
//! generated for this run (rcgen). Shows that the store connects and writes with
//! `sslmode=require` and with `verify-full` + `sslrootcert`, that `verify-full` refuses a wrong
//! host name and a wrong CA with a clear error, and that Redis works over `rediss://` with the
//! CA and refuses a server whose CA it does not trust.
//!
//! Needs `initdb`/`pg_ctl` (Debian package postgresql, as `make test` installs) and
//! `redis-server` built with TLS. Without them the tests fail, unless `SCALPER_SKIP_TLS_DB=1`
//! says to skip them (loudly).

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{events, numbered, wait_until};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use scalper::config::{RedisConfig, Secret};
use scalper::publish::connection::RedisTarget;
use scalper::store::postgres::{PgOptions, PgStore};
use scalper::store::{Store, StoreError};

const SECRET: &str = "tls-test-password-never-shown";

/// The CA, and a server certificate it signed for `localhost` and 127.0.0.1, as PEM files in
/// `dir`; and a second CA that signed nothing here.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki(dir: &Path) -> Pki {
    let ca_issuer = ca("scalper test CA");
    let other = ca("some other CA");
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca_issuer).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca_issuer.pem()).unwrap();
    std::fs::write(&pki.other_ca, other.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a missing tool may skip the test (it fails otherwise).
fn skip(what: &str) -> bool {
    if std::env::var("SCALPER_SKIP_TLS_DB").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: {what} is not available (SCALPER_SKIP_TLS_DB=1) ***\n");
        true
    } else {
        panic!(
            "{what} is not available: install it (make test does) or set SCALPER_SKIP_TLS_DB=1 to skip"
        );
    }
}

/// A loopback port nobody listened on a moment ago (the server may still lose a race for it:
/// callers retry).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

// ---- PostgreSQL ----------------------------------------------------------------------------

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

/// PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
fn as_pg(tool: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

/// A private cluster with TLS on; stopped and removed on drop.
struct TlsPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsPostgres {
    fn start(dir: tempfile::TempDir, pki: &Pki) -> TlsPostgres {
        let bin = pg_bin().expect("checked by the caller");
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            assert!(run(Command::new("chmod").arg("755").arg(dir.path())));
            assert!(run(Command::new("chown").arg("-R").arg("postgres:").arg(dir.path())));
        }
        let initdb = as_pg(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        // The server's key must be private to the user running the server.
        let key = data.join("server.key");
        std::fs::copy(&pki.key, &key).unwrap();
        if is_root() {
            assert!(run(Command::new("chown").arg("postgres:").arg(&key)));
        }
        assert!(run(Command::new("chmod").arg("600").arg(&key)));
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c ssl=on \
                 -c ssl_cert_file={cert} -c ssl_key_file={key}",
                data = data.display(),
                cert = pki.cert.display(),
                key = key.display(),
            );
            if run(as_pg(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(data.join("server.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]))
            {
                return TlsPostgres { bin, data, port, _dir: dir };
            }
        }
        let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
        panic!("PostgreSQL with ssl=on did not start:\n{log}");
    }

    fn url(&self, params: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres?{params}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = run(as_pg(&self.bin.join("pg_ctl")).arg("-D").arg(&self.data).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }
}

fn options(app: &str) -> PgOptions {
    PgOptions {
        schema: Some(format!("tls_{app}")),
        application_name: format!("tls_{app}"),
        password: Some(Secret::new(SECRET.to_string())),
        ..PgOptions::default()
    }
}

/// Connects as the store does, writes an event and reads it back; returns whether the
/// server saw the session encrypted.
fn connect_and_write(pg: &TlsPostgres, url: &str, app: &str) -> bool {
    let opts = options(app);
    let mut store =
        PgStore::connect(url, &opts).unwrap_or_else(|e| panic!("connect with {url}: {e}"));
    store.apply(&events(1, vec![numbered(7)])).expect("write over TLS");
    assert_eq!(store.last_event_id().unwrap().map(|id| id.0), Some(1));
    // Asked behind the store's back, on a plain connection: is the store's session encrypted?
    let mut admin = ::postgres::Client::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable", pg.port),
        ::postgres::NoTls,
    )
    .unwrap();
    let row = admin
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&opts.application_name],
        )
        .unwrap();
    drop(store);
    row.get::<_, Option<bool>>(0).expect("the store's session is listed")
}

fn refused(url: &str, app: &str) -> String {
    let err = PgStore::connect(url, &options(app)).expect_err(url);
    let text = err.to_string();
    assert!(!text.contains(SECRET), "{text}");
    assert!(matches!(err, StoreError::Unavailable { .. } | StoreError::Config(_)), "{err:?}");
    text
}

#[test]
fn postgres_store_connects_over_tls_as_sslmode_asks() {
    let Some(_) = pg_bin() else {
        if skip("PostgreSQL (initdb, pg_ctl)") {
            return;
        }
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let ca = pki.ca.display().to_string();
    let other_ca = pki.other_ca.display().to_string();
    let pg = TlsPostgres::start(dir, &pki);

    // Encrypted, certificate unchecked (libpq's `require`).
    assert!(connect_and_write(&pg, &pg.url("sslmode=require"), "require"), "require: not TLS");
    // Encrypted and verified: the CA signed the certificate, which names 127.0.0.1.
    let full = pg.url(&format!("sslmode=verify-full&sslrootcert={ca}"));
    assert!(connect_and_write(&pg, &full, "full"), "verify-full: not TLS");
    // The same in key=value form, host name `localhost` (an address given, so no lookup).
    let pairs = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert='{ca}'",
        pg.port
    );
    assert!(connect_and_write(&pg, &pairs, "pairs"), "key=value verify-full: not TLS");
    // `disable` stays plain.
    assert!(!connect_and_write(&pg, &pg.url("sslmode=disable"), "plain"), "disable: TLS");

    // A host name the certificate does not carry: refused by verify-full, not by verify-ca.
    let wrong_host = format!(
        "host=db.wrong.test hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={ca}",
        pg.port
    );
    let err = refused(&wrong_host, "wrong_host");
    assert!(
        err.contains("invalid peer certificate") && err.contains("not valid for name"),
        "wrong host name: {err}"
    );
    assert!(
        connect_and_write(&pg, &wrong_host.replace("verify-full", "verify-ca"), "ca_only"),
        "verify-ca: not TLS"
    );

    // A CA that did not sign the server's certificate, and the default web PKI roots.
    let err = refused(&pg.url(&format!("sslmode=verify-full&sslrootcert={other_ca}")), "wrong_ca");
    assert!(err.contains("invalid peer certificate") && err.contains("UnknownIssuer"), "{err}");
    let err = refused(&pg.url("sslmode=verify-full"), "webpki");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // `require` with a root file verifies it, as libpq does.
    let err = refused(&pg.url(&format!("sslmode=require&sslrootcert={other_ca}")), "req_ca");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // A root file that is not there says so.
    let err = refused(&pg.url("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"), "no_ca");
    assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
}

// ---- Redis ---------------------------------------------------------------------------------

fn redis_server_has_tls() -> bool {
    Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A private `redis-server` listening only with TLS; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(dir: &Path, pki: &Pki) -> TlsRedis {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--tls-cert-file")
                .arg(&pki.cert)
                .arg("--tls-key-file")
                .arg(&pki.key)
                .arg("--tls-ca-cert-file")
                .arg(&pki.ca)
                .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let up = wait_until(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    || child.try_wait().ok().flatten().is_some()
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return TlsRedis { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server with a TLS port did not start (built without TLS?)");
    }

    fn config(&self, ca: Option<&Path>) -> RedisConfig {
        RedisConfig {
            enabled: true,
            url: format!("rediss://127.0.0.1:{}/0", self.port).parse().unwrap(),
            key_prefix: "tls:".into(),
            heartbeat_ttl: Duration::from_secs(15),
            tls_ca_file: ca.map(Path::to_path_buf),
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_publishes_over_rediss_with_the_ca_and_refuses_another() {
    if !redis_server_has_tls() && skip("redis-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let redis = TlsRedis::start(dir.path(), &pki);
    let secret = Secret::new(SECRET.to_string());
    let timeout = Duration::from_secs(5);

    let target = RedisTarget::from_config(&redis.config(Some(&pki.ca)), None, timeout).unwrap();
    let mut con = target.connect().expect("rediss:// with the CA");
    let _: () = redis::cmd("SET").arg("tls:probe").arg("42").query(&mut con).unwrap();
    let got: String = redis::cmd("GET").arg("tls:probe").query(&mut con).unwrap();
    assert_eq!(got, "42");
    let receivers: i64 = redis::cmd("PUBLISH").arg("tls:events").arg("{}").query(&mut con).unwrap();
    assert_eq!(receivers, 0);

    // The wrong CA, and the default web PKI roots: refused, the password nowhere in the error.
    for ca in [Some(pki.other_ca.as_path()), None] {
        let target = RedisTarget::from_config(&redis.config(ca), Some(&secret), timeout).unwrap();
        let err = target.connect().map(|_| ()).expect_err("an untrusted server is refused");
        let text = scalper::publish::connection::describe_error(&err);
        assert!(text.contains("UnknownIssuer") || text.contains("certificate"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }

    // A CA file that cannot be read is named in the error.
    let missing = dir.path().join("missing-ca.pem");
    let err = RedisTarget::from_config(&redis.config(Some(&missing)), None, timeout).unwrap_err();
    assert!(err.contains("redis.tls_ca_file") && err.contains("missing-ca.pem"), "{err}");
}
