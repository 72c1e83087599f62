//! JupyterLab sessions against the real router over SQLite (docs/jupyter.md): the start form
//! submits an ordinary job with the session's command; the agent's endpoint report is checked
//! (field, fence, node); and the proxy forwards the owner's request to a stand-in for the
//! session's server on loopback, adding the token and keeping the portal's cookies and strict
//! headers out of it, while everyone else is refused before anything is forwarded.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Harness;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tower::ServiceExt;

const HOST: &str = "portal.test";
const TOKEN: &str = "sessiontokenAAAAbbbb_0123-xyz";

/// A session's server stand-in: answers every request `hello` with a policy of its own, and
/// hands each request's head to the test.
async fn fake_session() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Security-Policy: frame-ancestors 'self'\r\n\
                      Content-Type: text/html\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                )
                .await;
        }
    });
    (port, rx)
}

async fn get(
    h: &Harness,
    path: &str,
    cookie: &str,
    method: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("origin", format!("http://{HOST}"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn sessions_endpoints_and_the_proxy() {
    let mut h = Harness::sqlite().await;
    let org = h.org("lab").await;
    let p = h.project(org, "vision").await;
    let (_, owner) = h.user("kim", "member", Some(org), &[p]).await;
    let (_, colleague) = h.user("lee", "member", Some(org), &[p]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let (_, stranger_agent) = h.user("agent-2", "agent", None, &[]).await;
    let node = h
        .ok(
            &agent,
            "POST",
            "/v1/agent/register",
            Some(
                json!({"name": "n1", "gpu_model": "H200", "gpus": 8, "cpu_milli": 64000,
                        "memory_mib": 1000000, "address": "127.0.0.1"}),
            ),
            200,
        )
        .await["id"]
        .as_i64()
        .unwrap();

    // Start from the form: an ordinary job, named and shaped as asked.
    let mine = format!("haneul_session={}", h.portal_session(&owner, HOST).await);
    let req = Request::builder()
        .method("POST")
        .uri("/portal/sessions")
        .header("host", HOST)
        .header("origin", format!("http://{HOST}"))
        .header("cookie", &mine)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "project={p}&gpus=2&hours=0.5&environment=%2Fopt%2Flab&image="
        )))
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let jobs = h.ok(&owner, "GET", "/v1/jobs", None, 200).await;
    let job = &jobs["jobs"][0];
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["name"], "jupyter-lab");
    assert_eq!(job["gpus_per_task"], 2);
    assert_eq!(job["time_limit_s"], 1800);
    let script = job["command"][2].as_str().unwrap();
    assert!(script.contains("PATH='/opt/lab/bin'"), "{script}");
    assert!(
        script.contains("--ServerApp.shutdown_no_activity_timeout=3600"),
        "{script}"
    );
    assert!(script.contains("--ServerApp.base_url=\"/portal/sessions/$HANEUL_JOB_ID/\""));

    // Queued: the session's URL says it is starting, and reloads itself.
    let lab = format!("/portal/sessions/{id}/lab?reset");
    let (status, headers, _) = get(&h, &lab, &mine, "GET").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["refresh"], "2");

    h.step().await;
    assert_eq!(h.job_state(id).await, "running");
    let (port, mut seen) = fake_session().await;
    let report = |fence: i64, port: u16, token: &str| json!({"job": id, "fence": fence, "task": 0, "port": port, "token": token});
    let path = format!("/v1/agent/nodes/{node}/endpoints");
    // Each bad field named; a stale fence and another agent's node refused.
    let (s, v) = h
        .call(Some(&agent), "POST", &path, Some(report(1, 80, TOKEN)))
        .await;
    assert_eq!(
        (s.as_u16(), v["error"]["field"].as_str()),
        (400, Some("port")),
        "{v}"
    );
    let (s, v) = h
        .call(Some(&agent), "POST", &path, Some(report(1, port, "short")))
        .await;
    assert_eq!(
        (s.as_u16(), v["error"]["field"].as_str()),
        (400, Some("token")),
        "{v}"
    );
    let (s, v) = h
        .call(
            Some(&agent),
            "POST",
            &path,
            Some(report(1, port, "bad token with spaces")),
        )
        .await;
    assert_eq!(s.as_u16(), 400, "{v}");
    let (s, v) = h
        .call(Some(&agent), "POST", &path, Some(report(2, port, TOKEN)))
        .await;
    assert_eq!(s.as_u16(), 409, "a fence that is not the attempt's: {v}");
    let (s, v) = h
        .call(
            Some(&stranger_agent),
            "POST",
            &path,
            Some(report(1, port, TOKEN)),
        )
        .await;
    assert_eq!(s.as_u16(), 404, "another agent's node: {v}");
    let (s, v) = h
        .call(Some(&owner), "POST", &path, Some(report(1, port, TOKEN)))
        .await;
    assert!(s.is_client_error(), "a person's token: {v}");
    assert!(
        h.state.endpoints.get(id, 1).is_none(),
        "nothing kept from the refusals"
    );
    h.ok(&agent, "POST", &path, Some(report(1, port, TOKEN)), 204)
        .await;
    let ep = h.state.endpoints.get(id, 1).unwrap();
    assert_eq!(
        (ep.host.as_str(), ep.port, ep.node),
        ("127.0.0.1", port, node)
    );

    // Nobody but the owner: a colleague of the same project and the centre administrator get
    // the not-found page, and nothing reaches the session.
    for token in [&colleague, &h.admin.clone()] {
        let cookie = format!("haneul_session={}", h.portal_session(token, HOST).await);
        for method in ["GET", "POST", "PUT"] {
            let (status, _, body) = get(&h, &lab, &cookie, method).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {body}");
            assert!(!body.contains("hello"));
        }
    }
    let (status, headers, _) = get(&h, &lab, "", "GET").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/portal/signin");
    assert!(
        seen.try_recv().is_err(),
        "a refused request reached the session"
    );

    // The owner's request goes through: the token added, the portal's cookies kept back, the
    // session's own headers kept and the portal's strict policy not put over them.
    let (status, headers, body) = get(
        &h,
        &lab,
        &format!("{mine}; _xsrf=abc; haneul_lang=ko"),
        "GET",
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(headers["content-security-policy"], "frame-ancestors 'self'");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.get("x-frame-options").is_none());
    let head = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.starts_with(&format!("get /portal/sessions/{id}/lab?reset http/1.1")),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "authorization: token {}",
            TOKEN.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(head.contains("cookie: _xsrf=abc\r\n"), "{head}");
    assert!(!head.contains("haneul_session"), "{head}");
    assert!(head.contains(&format!("host: {HOST}")), "{head}");
    // A write from another origin is refused before it is forwarded.
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("/portal/sessions/{id}/api/kernels/x"))
        .header("host", HOST)
        .header("origin", "http://elsewhere.example")
        .header("cookie", &mine)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        h.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert!(seen.try_recv().is_err());

    // The sessions page lists it, ready, with its GPUs and a stop button; a colleague's does
    // not.
    let (status, _, page) = get(&h, "/portal/sessions", &mine, "GET").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("id=\"open-{id}\"")), "{page}");
    assert!(page.contains(&format!("id=\"stop-{id}\"")));
    let cookie = format!(
        "haneul_session={}",
        h.portal_session(&colleague, HOST).await
    );
    let (_, _, page) = get(&h, "/portal/sessions", &cookie, "GET").await;
    assert!(
        !page.contains(&format!("session-{id}")),
        "a colleague sees the session"
    );
    // A colleague's stop is refused at the confirmation.
    let (status, _, _) = get(&h, &format!("/portal/sessions/stop/{id}"), &cookie, "POST").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Stopped: the job is cancelled and the URL says the session ended.
    let req = Request::builder()
        .method("POST")
        .uri(format!("/portal/sessions/stop/{id}"))
        .header("host", HOST)
        .header("origin", format!("http://{HOST}"))
        .header("cookie", &mine)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("reason=finished&confirmed=1"))
        .unwrap();
    assert_eq!(
        h.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    h.step().await;
    let state = h.job_state(id).await;
    assert!(state == "cancelled" || state == "stopping", "{state}");
    let (status, _, body) = get(&h, &lab, &mine, "GET").await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(body.contains("This session has ended"), "{body}");
    assert!(
        h.state.endpoints.get(id, 1).is_none(),
        "the endpoint is forgotten on stop"
    );
}
