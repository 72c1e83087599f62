//! The client against small real servers: a rustls server with a CA made here (rcgen) for
//! certificate checks and HTTP/2, plain axum servers for failing over and following a leader,
//! and raw sockets where the test must control the bytes (chunk boundaries inside a Korean
//! character, a submit whose answer is lost).

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use haneul_client::{Client, Error, Method, Options, Retry};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    server_der: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
}

/// A CA and a certificate it signed for localhost and 127.0.0.1.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "haneul test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_der: cert.der().clone(),
        server_key: key.serialize_der(),
    }
}

fn app(name: &'static str) -> Router {
    Router::new()
        .route(
            "/version",
            get(|req: axum::extract::Request| async move { format!("{:?}", req.version()) }),
        )
        .route("/name", get(move || async move { name }))
}

/// Serves `app` over TLS (HTTP/2 and HTTP/1.1 offered by ALPN) on a free loopback port.
async fn tls_server(pki: &Pki, app: Router) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, tls)
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
    addr
}

async fn plain_server(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client(servers: &str, ca_file: Option<std::path::PathBuf>) -> Client {
    Client::new(&Options {
        servers: servers.to_string(),
        token: "t".into(),
        ca_file,
        ..Default::default()
    })
    .unwrap()
}

async fn text(c: &Client, path: &str) -> Result<String, Error> {
    let a = c.request(Method::GET, path, None, &[], None).await?;
    Ok(String::from_utf8(a.body).unwrap())
}

#[tokio::test]
async fn trusts_the_given_ca_and_speaks_http2() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let addr = tls_server(&pki, app("a")).await;
    for host in [
        format!("https://{addr}"),
        format!("https://localhost:{}", addr.port()),
    ] {
        let c = client(&host, Some(ca.clone()));
        assert_eq!(text(&c, "/version").await.unwrap(), "HTTP/2.0", "{host}");
    }
}

#[tokio::test]
async fn refuses_a_server_whose_ca_it_does_not_know() {
    let pki = pki();
    let addr = tls_server(&pki, app("a")).await;
    let url = format!("https://{addr}");
    // The public roots do not know the centre's CA.
    let e = text(&client(&url, None), "/version").await.unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("not signed by a CA this client trusts"),
        "{msg}"
    );
    assert!(msg.contains("--ca-file"), "{msg}");
    assert!(!e.is_transient(), "retrying cannot fix a certificate");
    // Nor does another CA.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, self::pki().ca_pem).unwrap();
    let e = text(&client(&url, Some(other)), "/version")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
}

#[test]
fn a_ca_file_that_is_not_a_certificate_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "hello").unwrap();
    for ca in [bad, dir.path().join("missing.pem")] {
        let e = Client::new(&Options {
            servers: "https://127.0.0.1:1".into(),
            token: String::new(),
            ca_file: Some(ca.clone()),
            ..Default::default()
        })
        .err()
        .expect("refused");
        let msg = e.to_string();
        assert!(msg.starts_with("--ca-file: "), "{msg}");
        assert!(msg.contains(&ca.display().to_string()), "{msg}");
    }
}

#[test]
fn the_blocking_client_speaks_tls_too() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = rt.block_on(tls_server(&pki, app("a")));
    let c = haneul_client::blocking::Client::new(&Options {
        servers: format!("https://{addr}"),
        token: "t".into(),
        ca_file: Some(ca),
        ..Default::default()
    })
    .unwrap();
    let a = c
        .request(Method::GET, "/version", None, &[], None, &Retry::never())
        .unwrap();
    assert_eq!(a.body, b"HTTP/2.0");
    drop(c);
    drop(rt);
}

#[tokio::test]
async fn moves_on_from_a_dead_server_and_follows_the_named_leader() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let leader = plain_server(app("leader")).await;
    let leader_url = format!("http://{leader}");
    let standby = plain_server(Router::new().route(
        "/name",
        get(move || {
            let leader_url = leader_url.clone();
            async move {
                let mut h = HeaderMap::new();
                h.insert(haneul_client::LEADER_HEADER, leader_url.parse().unwrap());
                (h, "standby")
            }
        }),
    ))
    .await;
    let c = client(&format!("http://{dead_addr},http://{standby}"), None);
    let e = text(&c, "/name").await.unwrap_err();
    assert!(
        matches!(e, Error::Unreachable { .. }) && e.is_transient(),
        "{e:?}"
    );
    // The next call goes to the next server, a standby, which names the leader ...
    assert_eq!(text(&c, "/name").await.unwrap(), "standby");
    assert_eq!(c.server(), format!("http://{leader}"));
    // ... and the one after goes there.
    assert_eq!(text(&c, "/name").await.unwrap(), "leader");
    // A retrying call gets through a dead first server by itself.
    let c = client(&format!("http://{dead_addr},http://{leader}"), None);
    let a = c
        .request_retrying(Method::GET, "/name", None, &[], None, &Retry::times(3))
        .await
        .unwrap();
    assert_eq!(a.body, b"leader");
}

/// A standby that refuses a write with 503 `not_leader` has done nothing: the client sends the
/// write to the leader it names at once, even a call that is never retried, and only once.
#[tokio::test]
async fn a_write_refused_by_a_standby_goes_to_the_leader_once() {
    use axum::routing::post;
    let writes = Arc::new(Mutex::new(0u32));
    let leader = {
        let writes = writes.clone();
        plain_server(Router::new().route(
            "/v1/things",
            post(move || {
                let writes = writes.clone();
                async move {
                    *writes.lock().unwrap() += 1;
                    "made"
                }
            }),
        ))
        .await
    };
    let leader_url = format!("http://{leader}");
    let standby = plain_server(Router::new().route(
        "/v1/things",
        post(move || {
            let leader_url = leader_url.clone();
            async move {
                let mut h = HeaderMap::new();
                h.insert(haneul_client::LEADER_HEADER, leader_url.parse().unwrap());
                let body = format!(
                    r#"{{"error":{{"code":"not_leader","message":"stands by","leader":"{leader_url}"}}}}"#
                );
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, h, body)
            }
        }),
    ))
    .await;
    let c = client(&format!("http://{standby}"), None);
    let a = c
        .request_retrying(
            Method::POST,
            "/v1/things",
            Some(b"{}".to_vec()),
            &[],
            None,
            &Retry::never(),
        )
        .await
        .unwrap();
    assert_eq!(a.body, b"made");
    assert_eq!(*writes.lock().unwrap(), 1);
    assert_eq!(c.server(), format!("http://{leader}"));
    // A 503 that names no leader is an ordinary server error: not followed, not re-sent.
    let busy = plain_server(Router::new().route(
        "/v1/things",
        post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy") }),
    ))
    .await;
    let c = client(&format!("http://{busy}"), None);
    let Err(e) = c
        .request_retrying(Method::POST, "/v1/things", None, &[], None, &Retry::never())
        .await
    else {
        panic!("a 503 must be an error");
    };
    assert_eq!(e.status(), Some(503));
    assert!(!e.is_not_leader());
}

#[tokio::test]
async fn a_standby_is_not_followed_from_https_down_to_http() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let standby = tls_server(
        &pki,
        Router::new().route(
            "/name",
            get(|| async {
                let mut h = HeaderMap::new();
                h.insert(
                    haneul_client::LEADER_HEADER,
                    "http://127.0.0.1:9".parse().unwrap(),
                );
                (h, "standby")
            }),
        ),
    )
    .await;
    let c = client(&format!("https://{standby}"), Some(ca));
    assert_eq!(text(&c, "/name").await.unwrap(), "standby");
    assert_eq!(c.server(), format!("https://{standby}"));
}

/// Reads one request (head and a Content-Length body); returns the head.
async fn read_request(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        let n = s.read(&mut byte).await.unwrap();
        if n == 0 {
            return String::new();
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut byte).await.unwrap();
                buf.extend_from_slice(&byte[..n]);
            }
            return head;
        }
    }
}

#[tokio::test]
async fn log_text_cut_inside_a_korean_character_arrives_whole() {
    let text = "학습 시작: 에포크 1/3 손실 0.42\n한국어 출력 끝\n";
    let body = serde_json::to_vec(&serde_json::json!([
        {"id": 1, "fence": 1, "task": 0, "data": text, "at": 0}
    ]))
    .unwrap();
    // Cut the body inside the first multi-byte character and every few bytes after, each
    // piece its own HTTP chunk, written separately.
    let first = body.iter().position(|&b| b >= 0x80).unwrap() + 1;
    let mut cuts = vec![first];
    cuts.extend((first + 2..body.len()).step_by(7));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_request(&mut s).await;
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
              transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut at = 0;
        for cut in cuts.into_iter().chain([body.len()]) {
            let piece = &body[at..cut];
            at = cut;
            if piece.is_empty() {
                continue;
            }
            s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .await
                .unwrap();
            s.write_all(piece).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
    });
    let c = client(&format!("http://{addr}"), None);
    let chunks = c.logs(7, 0, &Retry::never()).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].data, text);
}

#[tokio::test]
async fn a_submit_whose_answer_was_lost_is_retried_with_the_same_key() {
    let keys = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = keys.clone();
    tokio::spawn(async move {
        for n in 0.. {
            let (mut s, _) = listener.accept().await.unwrap();
            let head = read_request(&mut s).await;
            let key = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("idempotency-key")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            seen.lock().unwrap().push(key);
            if n == 0 {
                // The job is made, the answer lost: the connection drops before it.
                drop(s);
                continue;
            }
            let job = serde_json::json!({"id": 41, "project": 1, "user": 1, "name": "x",
                "state": "queued", "command": ["true"], "replicas": 1, "gpus_per_task": 1,
                "gpu_fraction_milli": null, "gpu_models": [], "priority": "normal",
                "preemptible": false, "time_limit_s": null, "submitted_at": 0, "updated_at": 0,
                "attempts": 0, "exit_code": null, "reason": null})
            .to_string();
            s.write_all(
                format!(
                    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{job}",
                    job.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        }
    });
    let c = client(&format!("http://{addr}"), None);
    let job = c
        .submit(
            &serde_json::json!({"project": 1, "command": ["true"]}),
            &Retry::times(3),
        )
        .await
        .unwrap();
    assert_eq!(job.id, 41);
    let keys_handle = keys;
    let keys = seen_keys(&keys_handle);
    assert_eq!(keys.len(), 2, "one lost try, one answered: {keys:?}");
    assert_eq!(keys[0].len(), 32);
    assert_eq!(keys[0], keys[1], "the retry carries the first try's key");
    // The next logical submit has a key of its own.
    c.submit(&serde_json::json!({"project": 1}), &Retry::never())
        .await
        .unwrap();
    let all = seen_keys(&keys_handle);
    assert_eq!(all.len(), 3);
    assert_ne!(all[2], all[0]);
}

fn seen_keys(k: &Mutex<Vec<String>>) -> Vec<String> {
    k.lock().unwrap().clone()
}
