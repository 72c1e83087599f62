//! The listener over real sockets: HTTPS with a real TLS client (HTTP/2 when offered, the
//! certificate reloaded on SIGHUP), the refusal of plain HTTP off loopback, and connection
//! hygiene (half-open connections closed, the connection cap, write rate limits, long polls).

use haneul_server::clock::ManualClock;
use haneul_server::serve::Limits;
use haneul_server::tls::{TlsFiles, local_ca};
use haneul_server::{Config, Running, ServerError};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Up {
    running: Running,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn start(change: impl FnOnce(&mut Config, &Path)) -> Up {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("state"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    change(&mut cfg, dir.path());
    let running = haneul_server::start(cfg).await.unwrap();
    let admin = std::fs::read_to_string(dir.path().join("state/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    Up {
        running,
        admin,
        _dir: dir,
    }
}

fn trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn https_with_the_local_authority_negotiates_http2_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let ca = local_ca(&tls).unwrap();
    assert!(ca.created);
    #[cfg(unix)]
    {
        assert_eq!(mode(&ca.server.key), 0o600);
        assert_eq!(mode(&ca.ca_key), 0o600);
    }
    let first = std::fs::read(&ca.server.cert).unwrap();
    // A restart reuses the authority: clients that trust ca.pem keep working.
    let again = local_ca(&tls).unwrap();
    assert!(!again.created);
    assert_eq!(std::fs::read(&again.server.cert).unwrap(), first);

    let files = ca.server.clone();
    let up = start(|c, _| c.tls = Some(files)).await;
    let port = up.running.addr.port();
    let client = trusting(&ca.ca_cert);
    // Every name in the certificate: localhost, 127.0.0.1 and ::1 (when this host has IPv6
    // loopback the server is not on it, so only the first two are reachable here).
    for host in ["localhost", "127.0.0.1"] {
        let r = client
            .get(format!("https://{host}:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(
            r.version(),
            reqwest::Version::HTTP_2,
            "ALPN offered h2 to {host}"
        );
    }
    // A client without HTTP/2 gets HTTP/1.1 on the same port.
    let pem = std::fs::read(&ca.ca_cert).unwrap();
    let h1 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // An authenticated call works over both.
    let r = client
        .get(format!("https://localhost:{port}/v1/orgs"))
        .bearer_auth(&up.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Refusals: a client that does not trust the authority, and plain HTTP to the TLS port.
    let stranger = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    let e = stranger
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    let r = plain()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(r.is_err() || r.unwrap().status() != 200);
    up.running.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(&dir.path().join("a")).unwrap();
    let other = local_ca(&dir.path().join("b")).unwrap();
    let mut cfg = Config::new(dir.path().join("state"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    // A key that belongs to another certificate.
    cfg.tls = Some(TlsFiles {
        cert: ca.server.cert.clone(),
        key: other.server.key.clone(),
    });
    let err = haneul_server::start(cfg.clone()).await.err().unwrap();
    assert!(matches!(err, ServerError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("does not fit"), "{err}");
    cfg.tls = Some(TlsFiles {
        cert: dir.path().join("missing.pem"),
        key: ca.server.key.clone(),
    });
    let err = haneul_server::start(cfg).await.err().unwrap();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn sighup_serves_the_new_certificate_on_the_same_listener() {
    let dir = tempfile::tempdir().unwrap();
    let old = local_ca(&dir.path().join("old")).unwrap();
    let new = local_ca(&dir.path().join("new")).unwrap();
    // The server reads its own copies, which the "rotation" overwrites.
    let live = TlsFiles {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
    };
    std::fs::copy(&old.server.cert, &live.cert).unwrap();
    std::fs::copy(&old.server.key, &live.key).unwrap();
    let files = live.clone();
    let up = start(|c, _| c.tls = Some(files)).await;
    let url = format!("https://localhost:{}/healthz", up.running.addr.port());
    let trusts_old = trusting(&old.ca_cert);
    let trusts_new = trusting(&new.ca_cert);
    assert_eq!(trusts_old.get(&url).send().await.unwrap().status(), 200);
    assert!(trusts_new.get(&url).send().await.is_err());

    // A broken rotation (half a file) keeps the certificate in use.
    std::fs::write(&live.cert, b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = trusting(&old.ca_cert);
    assert_eq!(fresh.get(&url).send().await.unwrap().status(), 200);

    std::fs::copy(&new.server.cert, &live.cert).unwrap();
    std::fs::copy(&new.server.key, &live.key).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A new client each time: a kept-alive connection keeps the certificate it opened with.
        if trusting(&new.ca_cert).get(&url).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trusting(&old.ca_cert).get(&url).send().await.is_err());
    up.running.stop().await;
}

fn hup() {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("state"));
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let err = haneul_server::start(cfg.clone()).await.err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, ServerError::Insecure(_)), "{msg}");
    assert!(
        msg.contains("--tls-cert") && msg.contains("--insecure-http"),
        "{msg}"
    );
    // Nothing was created: the refusal comes before the store is opened.
    assert!(!dir.path().join("state/admin.token").exists());

    cfg.insecure_http = true;
    let running = haneul_server::start(cfg.clone()).await.unwrap();
    running.stop().await;

    let ca = local_ca(&dir.path().join("tls")).unwrap();
    cfg.insecure_http = false;
    cfg.tls = Some(ca.server);
    let running = haneul_server::start(cfg).await.unwrap();
    running.stop().await;
}

fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    change(&mut l);
    l
}

/// A fresh client's health check is answered: the server still serves others.
async fn assert_serves(addr: SocketAddr) {
    let r = plain()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Reads until the peer closes; the bytes and how long it took.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(t0.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, t0.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {within:?}; read {out:?}"),
        }
    }
}

#[tokio::test]
async fn half_open_connections_are_closed_after_the_header_timeout() {
    let up = start(|c, _| {
        c.limits = limits(|l| l.header_timeout = Duration::from_secs(1));
    })
    .await;
    let addr = up.running.addr;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(s);
    }
    // One that sends nothing at all.
    held.push(TcpStream::connect(addr).await.unwrap());
    // While they are held, the server answers others.
    assert_serves(addr).await;
    // Bounds an operator would still accept on a loaded machine: the point is that the
    // server closes them at all, long before a stranger could hold its slots.
    for mut s in held {
        let (_, took) = read_to_close(&mut s, Duration::from_secs(15)).await;
        assert!(took < Duration::from_secs(10), "closed after {took:?}");
    }
    up.running.stop().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = local_ca(&dir.path().join("tls")).unwrap();
    let files = ca.server.clone();
    let up = start(|c, _| {
        c.tls = Some(files);
        c.limits = limits(|l| l.header_timeout = Duration::from_secs(1));
    })
    .await;
    let mut s = TcpStream::connect(up.running.addr).await.unwrap();
    // The first bytes of a TLS record header, then nothing.
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let (_, took) = read_to_close(&mut s, Duration::from_secs(15)).await;
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    up.running.stop().await;
}

#[tokio::test]
async fn a_stalled_body_ends_the_request() {
    let up = start(|c, _| {
        c.limits = limits(|l| l.body_timeout = Duration::from_secs(1));
    })
    .await;
    let mut s = TcpStream::connect(up.running.addr).await.unwrap();
    let head = format!(
        "POST /v1/orgs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        up.admin
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(t0.elapsed() >= Duration::from_millis(900), "{text}");
    // Whatever the status, the request failed as the client's fault and nothing was made.
    assert!(n == 0 || text.starts_with("HTTP/1.1 4"), "{text}");
    let orgs: Value = plain()
        .get(format!("http://{}/v1/orgs", up.running.addr))
        .bearer_auth(&up.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orgs.as_array().map(Vec::len), Some(0), "{orgs}");
    up.running.stop().await;
}

async fn raw_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (bytes, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&bytes).to_string()
}

#[tokio::test]
async fn past_the_connection_cap_the_answer_is_503_with_retry_after() {
    let up = start(|c, _| {
        c.limits = limits(|l| l.max_connections = 3);
    })
    .await;
    let addr = up.running.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        // Answered and kept alive: the server holds its slot before the next one connects.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
            .await
            .expect("a held connection was not answered")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        held.push(s);
    }
    let text = raw_get(addr).await;
    let head = text.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{text}");
    assert!(head.contains("retry-after: 1"), "{text}");
    assert!(head.contains("connection: close"), "{text}");
    assert!(text.contains("\"overloaded\""), "{text}");
    // Freed slots serve again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = raw_get_keepalive(addr).await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    up.running.stop().await;
}

/// A GET with `Connection: close`, so that reading to the end ends.
async fn raw_get_keepalive(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (bytes, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&bytes).to_string()
}

#[tokio::test]
async fn writes_past_the_rate_get_429_with_retry_after_and_reads_and_agents_do_not() {
    // Budgets refill only when the test moves the server's clock, so a slow machine does not
    // refill them between requests.
    let clock = ManualClock::starting_now();
    let server_clock = clock.shared();
    let up = start(|c, _| {
        c.clock = server_clock;
        c.limits = limits(|l| {
            l.writes_per_second = 1;
            l.write_burst = 3;
        });
    })
    .await;
    let base = format!("http://{}", up.running.addr);
    let http = plain();
    let post = |token: String, path: &'static str, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let mut statuses = Vec::new();
    let mut retry = None;
    for i in 0..5 {
        let r = post(
            up.admin.clone(),
            "/v1/orgs",
            json!({"name": format!("o{i}"), "country": "KR"}),
        )
        .await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
    assert_eq!(retry, Some(1));
    // Reads are not limited, nor is the agent protocol (answered here by authorisation).
    for _ in 0..10 {
        let r = http
            .get(format!("{base}/v1/orgs"))
            .bearer_auth(&up.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = post(up.admin.clone(), "/v1/agent/register", json!({})).await;
        assert_ne!(r.status(), 429);
    }
    // Another token has its own budget.
    let user = post(
        up.admin.clone(),
        "/v1/users",
        json!({"name": "ops", "role": "centre-admin", "org": null, "projects": []}),
    )
    .await;
    assert_eq!(user.status(), 429, "the admin's budget is still spent");
    // A second refills one write.
    clock.advance(Duration::from_secs(1));
    let user: Value = post(
        up.admin.clone(),
        "/v1/users",
        json!({"name": "ops", "role": "centre-admin", "org": null, "projects": []}),
    )
    .await
    .json()
    .await
    .unwrap();
    let again = post(
        up.admin.clone(),
        "/v1/orgs",
        json!({"name": "o9", "country": "KR"}),
    )
    .await;
    assert_eq!(again.status(), 429, "one second refills one write, no more");
    clock.advance(Duration::from_secs(1));
    let token: Value = post(up.admin.clone(), "/v1/tokens", json!({"user": user["id"]}))
        .await
        .json()
        .await
        .unwrap();
    let other = token["secret"].as_str().unwrap().to_string();
    let r = post(
        other,
        "/v1/orgs",
        json!({"name": "theirs", "country": "KR"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    up.running.stop().await;
}

#[tokio::test]
async fn a_long_poll_outlives_the_idle_and_header_timeouts() {
    let up = start(|c, _| {
        c.limits = limits(|l| {
            l.header_timeout = Duration::from_secs(1);
            l.idle_timeout = Duration::from_secs(1);
        });
    })
    .await;
    let base = format!("http://{}", up.running.addr);
    let http = plain();
    let ok = |r: reqwest::Response, want: u16| async move {
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, want, "{v}");
        v
    };
    let send = |token: &str, path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let _ = send(&up.admin, "/v1/pools", json!({"name": "default"})).await;
    let u = ok(
        send(
            &up.admin,
            "/v1/users",
            json!({"name": "n1", "role": "agent", "org": null, "projects": []}),
        )
        .await
        .unwrap(),
        201,
    )
    .await;
    let t = ok(
        send(&up.admin, "/v1/tokens", json!({"user": u["id"]}))
            .await
            .unwrap(),
        201,
    )
    .await;
    let agent = t["secret"].as_str().unwrap().to_string();
    let node = ok(
        send(
            &agent,
            "/v1/agent/register",
            json!({"name": "n1", "gpu_model": "H200", "gpus": 8,
                   "cpu_milli": 64000, "memory_mib": 1000000}),
        )
        .await
        .unwrap(),
        200,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("{base}/v1/agent/nodes/{node}/assignments");
    let first = ok(
        http.get(&path).bearer_auth(&agent).send().await.unwrap(),
        200,
    )
    .await;
    let etag = first["etag"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let r = http
        .get(format!("{path}?etag={etag}&wait_ms=3000"))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    let v = ok(r, 200).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2900),
        "the poll did not wait: {took:?}"
    );
    assert_eq!(v["etag"], etag.as_str());
    up.running.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_soon_after_the_idle_timeout() {
    // The header timeout, which would also end a kept-alive HTTP/1.1 connection, is far off:
    // the close is the idle check's.
    let up = start(|c, _| {
        c.limits = limits(|l| {
            l.header_timeout = Duration::from_secs(30);
            l.idle_timeout = Duration::from_secs(1);
        });
    })
    .await;
    let mut s = TcpStream::connect(up.running.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (out, took) = read_to_close(&mut s, Duration::from_secs(20)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, with an idle timeout of 1 s"
    );
    up.running.stop().await;
}

/// A raw GET of /healthz with one extra header of `len` bytes; the answer's status line.
async fn get_with_header_of(addr: SocketAddr, len: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(len)
    );
    // The server may answer and close before the whole header is written.
    let _ = s.write_all(req.as_bytes()).await;
    let (bytes, _) = read_to_close(&mut s, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// Each HTTP/1.1 connection's read buffer is capped at hyper's smallest (8 KiB), so that a
/// long poll held per node costs that and no more; a header block past it is refused.
#[tokio::test]
async fn a_request_header_past_the_read_buffer_is_refused_with_431() {
    let up = start(|_, _| {}).await;
    let addr = up.running.addr;
    assert_eq!(
        get_with_header_of(addr, 6 * 1024).await,
        "HTTP/1.1 200 OK",
        "a header block under 8 KiB is served"
    );
    let refused = get_with_header_of(addr, 12 * 1024).await;
    assert!(
        refused.starts_with("HTTP/1.1 431"),
        "a 12 KiB header block: {refused:?}"
    );
    // The server goes on serving others.
    assert_serves(addr).await;
    up.running.stop().await;
}

/// A fleet's agents connect together after a restart: the kernel must hold more of them than
/// tokio's own 1,024 while the accept loop catches up, or it drops their SYNs and each waits a
/// second or more to send it again. Nothing accepts here, so every handshake must complete in
/// the listener's queue alone.
#[tokio::test]
async fn a_burst_of_connections_past_a_thousand_waits_in_the_queue() {
    const BURST: usize = 1_200;
    let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        cap > BURST,
        "net.core.somaxconn is {cap}: the kernel caps every listen queue there; \
         `sysctl -w net.core.somaxconn=4096` (Linux's default since 5.4) to run this test"
    );
    let files = haneul_server::serve::raise_file_limit();
    assert!(
        files > BURST as u64 + 128,
        "the file limit is {files}: `ulimit -n 4096` (or LimitNOFILE) to run this test"
    );
    let listener = haneul_server::serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let t0 = Instant::now();
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        // A dropped SYN is sent again after a second: under it, no connect waited for that.
        connects.spawn(tokio::time::timeout(
            Duration::from_millis(900),
            TcpStream::connect(addr),
        ));
    }
    let mut held = Vec::with_capacity(BURST);
    while let Some(done) = connects.join_next().await {
        match done.unwrap() {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("connect {} failed: {e}", held.len() + 1),
            Err(_) => panic!(
                "a connect waited 900 ms after {} of {BURST} were queued: a SYN was dropped",
                held.len()
            ),
        }
    }
    assert_eq!(held.len(), BURST, "in {:?}", t0.elapsed());
    drop(listener);
}
