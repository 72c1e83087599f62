//! Issue 15's refusals, each on SQLite and PostgreSQL where the store is involved: metrics
//! labels and their token, hostile strings (control characters, NUL, lengths in characters,
//! exit codes, Content-Type), job output with NUL, idempotency keys, unknown pools, log uploads
//! for ended attempts, ids of other tenants, token expiry and revocation, portal sessions, and
//! a broken audit chain.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Harness;
use haneul_server::clock::Clock;
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;

/// A raw request with the given headers; status, headers and body text.
async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = h
        .app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

struct World {
    h: Harness,
    org: i64,
    project: i64,
    member: String,
    agent: String,
    node: i64,
}

async fn world(h: Harness) -> World {
    let org = h.org("org-a").await;
    let project = h.project(org, "pa").await;
    let (_, member) = h.user("mia", "member", Some(org), &[project]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;
    World {
        h,
        org,
        project,
        member,
        agent,
        node,
    }
}

async fn inputs(h: Harness) {
    let w = world(h).await;
    let h = &w.h;
    let submit = |name: Value, command: Value| json!({"project": w.project, "name": name, "command": command, "gpus_per_task": 1});
    // A name forging a terminal row, CR, LF, NUL: each refused naming the field.
    for bad in ["a\u{1b}[2Jb", "a\rb", "x\ny", "x\0y", "del\u{7f}"] {
        let (s, v) = h
            .call(
                Some(&w.member),
                "POST",
                "/v1/jobs",
                Some(submit(json!(bad), json!(["true"]))),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
        assert_eq!(field(&v), "name", "{v}");
    }
    let (s, v) = h
        .call(
            Some(&w.member),
            "POST",
            "/v1/jobs",
            Some(submit(json!("ok"), json!(["sh", "a\0b"]))),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(field(&v), "command[1]");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("NUL"),
        "{v}"
    );
    // Free text keeps tab and newline.
    h.ok(
        &w.member,
        "POST",
        "/v1/jobs",
        Some(submit(
            json!("multi"),
            json!(["sh", "-c", "echo a\n\techo b"]),
        )),
        201,
    )
    .await;
    // Lengths are characters: 128 Hangul syllables are a valid name, 129 are not.
    let hangul = "하".repeat(128);
    h.ok(
        &h.admin,
        "POST",
        "/v1/orgs",
        Some(json!({"name": hangul, "country": "KR"})),
        201,
    )
    .await;
    let (s, v) = h
        .call(
            Some(&h.admin),
            "POST",
            "/v1/orgs",
            Some(json!({"name": "하".repeat(129), "country": "KR"})),
        )
        .await;
    assert_eq!((s, field(&v)), (StatusCode::BAD_REQUEST, "name"), "{v}");
    // NUL in the other fields the issue names: token name, health failure, award reason.
    let (s, v) = h
        .call(
            Some(&w.member),
            "POST",
            "/v1/tokens",
            Some(json!({"name": "lap\0top"})),
        )
        .await;
    assert_eq!((s, field(&v)), (StatusCode::BAD_REQUEST, "name"), "{v}");
    let (s, v) = h
        .call(
            Some(&w.agent),
            "POST",
            &format!("/v1/agent/nodes/{}/health", w.node),
            Some(json!({"failure": "xid 79\0"})),
        )
        .await;
    assert_eq!((s, field(&v)), (StatusCode::BAD_REQUEST, "failure"), "{v}");
    let award = h
        .ok(
            &h.admin,
            "POST",
            "/v1/awards",
            Some(
                json!({"project": w.project, "gpu_model": "H200", "gpu_hours": 10,
                        "valid_from": 0, "valid_until": 4_000_000_000_000i64}),
            ),
            201,
        )
        .await;
    let (s, v) = h
        .call(
            Some(&h.admin),
            "POST",
            &format!("/v1/awards/{}/adjust", award["id"]),
            Some(json!({"gpu_hours": 1, "reason": "top\0up"})),
        )
        .await;
    assert_eq!((s, field(&v)), (StatusCode::BAD_REQUEST, "reason"), "{v}");
    // Exit codes are the platform's 0 to 255.
    let (s, v) = h
        .call(
            Some(&w.agent),
            "POST",
            &format!("/v1/agent/nodes/{}/reports", w.node),
            Some(json!({"job": 1, "fence": 1, "task": 0, "exit_code": 256})),
        )
        .await;
    assert_eq!(
        (s, field(&v)),
        (StatusCode::BAD_REQUEST, "exit_code"),
        "{v}"
    );
    // A JSON body must say it is JSON.
    let body = submit(json!("ct"), json!(["true"])).to_string();
    let auth = format!("Bearer {}", w.member);
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut hs = vec![("authorization", auth.as_str())];
        if let Some(c) = ct {
            hs.push(("content-type", c));
        }
        let (s, _, text) = send(h, "POST", "/v1/jobs", &hs, &body).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}: {text}");
    }
    let (s, _, text) = send(
        h,
        "POST",
        "/v1/jobs",
        &[
            ("authorization", &auth),
            ("content-type", "application/json; charset=utf-8"),
        ],
        &body,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
}

#[tokio::test]
async fn hostile_strings_are_refused_naming_the_field_sqlite() {
    inputs(Harness::sqlite().await).await;
}

#[tokio::test]
async fn hostile_strings_are_refused_naming_the_field_postgres() {
    inputs(Harness::postgres().await).await;
}

/// Runs one job on the world's node and returns (job, fence).
async fn started_job(w: &mut World) -> (i64, i64) {
    let job = w.h.submit(&w.member, w.project, 1).await;
    w.h.step().await;
    let a =
        w.h.ok(
            &w.agent,
            "GET",
            &format!("/v1/agent/nodes/{}/assignments", w.node),
            None,
            200,
        )
        .await;
    let fence = a["assignments"][0]["fence"]
        .as_i64()
        .expect("an assignment");
    w.h.ok(
        &w.agent,
        "POST",
        &format!("/v1/agent/nodes/{}/reports", w.node),
        Some(json!({"job": job, "fence": fence, "task": 0})),
        200,
    )
    .await;
    (job, fence)
}

async fn logs_with_nul(h: Harness) {
    let mut w = world(h).await;
    let (job, fence) = started_job(&mut w).await;
    let upload = |data: &str| json!({"job": job, "fence": fence, "task": 0, "data": data});
    let logs = format!("/v1/agent/nodes/{}/logs", w.node);
    // NUL, a backslash before a 0 (the escape's own character) and both together.
    for data in ["x\0y", "a\\0b", "\\\0\n"] {
        w.h.ok(&w.agent, "POST", &logs, Some(upload(data)), 204)
            .await;
    }
    let got =
        w.h.ok(&w.member, "GET", &format!("/v1/jobs/{job}/logs"), None, 200)
            .await;
    let texts: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["data"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["x\0y", "a\\0b", "\\\0\n"]);
    // Output that is not UTF-8 goes as base64 and comes back exactly, with a readable copy.
    // "//4=" is 0xff 0xfe, "7ZU=" the first two bytes of "한" and "nA==" its last one.
    for b64 in ["//4=", "7Z", "7ZU=", "nA=="] {
        let body = json!({"job": job, "fence": fence, "task": 0, "data_base64": b64});
        let (s, v) = w.h.call(Some(&w.agent), "POST", &logs, Some(body)).await;
        if b64 == "7Z" {
            // Not padded: not standard base64.
            assert_eq!(
                (s, field(&v)),
                (StatusCode::BAD_REQUEST, "data_base64"),
                "{v}"
            );
        } else {
            assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        }
    }
    let both = json!({"job": job, "fence": fence, "task": 0, "data": "a", "data_base64": "YQ=="});
    let (s, v) = w.h.call(Some(&w.agent), "POST", &logs, Some(both)).await;
    assert_eq!(
        (s, field(&v)),
        (StatusCode::BAD_REQUEST, "data_base64"),
        "{v}"
    );
    let got =
        w.h.ok(
            &w.member,
            "GET",
            &format!("/v1/jobs/{job}/logs?after=0"),
            None,
            200,
        )
        .await;
    let chunks: Vec<haneul_api::LogChunk> = serde_json::from_value(got).unwrap();
    assert_eq!(chunks.len(), 6);
    assert_eq!(chunks[3].data, "\u{fffd}\u{fffd}");
    assert_eq!(chunks[3].bytes(), b"\xff\xfe");
    // Each half of a cut character is kept as sent; together they are the character.
    assert!(chunks[0].data_base64.is_none());
    let han: Vec<u8> = chunks[4..].iter().flat_map(|c| c.bytes()).collect();
    assert_eq!(han, "한".as_bytes());
    // An upload marked with its file and offset is stored once when sent twice; the marks
    // come together or not at all.
    let marked = |offset: i64, data: &str| {
        json!({"job": job, "fence": fence, "task": 0, "data": data,
               "stream": "stdout", "offset": offset})
    };
    for (offset, data) in [(0, "one\n"), (0, "one\n"), (2, "e\ntwo\n")] {
        w.h.ok(&w.agent, "POST", &logs, Some(marked(offset, data)), 204)
            .await;
    }
    let got =
        w.h.ok(
            &w.member,
            "GET",
            &format!("/v1/jobs/{job}/logs?after=0"),
            None,
            200,
        )
        .await;
    let chunks: Vec<haneul_api::LogChunk> = serde_json::from_value(got).unwrap();
    let texts: Vec<&str> = chunks[6..].iter().map(|c| c.data.as_str()).collect();
    assert_eq!(texts, ["one\n", "two\n"]);
    for (body, bad) in [
        (
            json!({"job": job, "fence": fence, "task": 0, "data": "x", "stream": "stdout"}),
            "offset",
        ),
        (
            json!({"job": job, "fence": fence, "task": 0, "data": "x", "offset": 3}),
            "stream",
        ),
        (marked(-1, "x"), "offset"),
    ] {
        let (s, v) = w.h.call(Some(&w.agent), "POST", &logs, Some(body)).await;
        assert_eq!((s, field(&v)), (StatusCode::BAD_REQUEST, bad), "{v}");
    }
    let (s, v) =
        w.h.call(
            Some(&w.agent),
            "POST",
            &logs,
            Some(json!({"job": job, "fence": fence, "task": 0, "data": "x",
                        "stream": "stdin", "offset": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // The job still ends normally.
    w.h.ok(
        &w.agent,
        "POST",
        &format!("/v1/agent/nodes/{}/reports", w.node),
        Some(json!({"job": job, "fence": fence, "task": 0, "exit_code": 0})),
        200,
    )
    .await;
    assert_eq!(w.h.job_state(job).await, "succeeded");
    // Output for an attempt that has ended is refused, as docs/server.md says.
    let (s, v) =
        w.h.call(Some(&w.agent), "POST", &logs, Some(upload("late")))
            .await;
    assert_eq!((s, field(&v)), (StatusCode::CONFLICT, "fence"), "{v}");
}

#[tokio::test]
async fn job_output_with_nul_is_kept_exactly_sqlite() {
    logs_with_nul(Harness::sqlite().await).await;
}

#[tokio::test]
async fn job_output_with_nul_is_kept_exactly_postgres() {
    logs_with_nul(Harness::postgres().await).await;
}

async fn idempotency(h: Harness) {
    let w = world(h).await;
    let h = &w.h;
    let auth = format!("Bearer {}", w.member);
    let job = json!({"project": w.project, "command": ["true"], "gpus_per_task": 1}).to_string();
    let post = |key: &'static str, body: String| {
        let auth = auth.clone();
        async move {
            send(
                h,
                "POST",
                "/v1/jobs",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                &body,
            )
            .await
        }
    };
    let (s1, h1, b1) = post("k-1", job.clone()).await;
    assert_eq!(s1, StatusCode::CREATED, "{b1}");
    assert!(h1.get("idempotent-replayed").is_none());
    // The same JSON spelt otherwise is the same request.
    let respelt =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&job).unwrap()).unwrap();
    let (s2, h2, b2) = post("k-1", respelt).await;
    assert_eq!(s2, StatusCode::CREATED, "{b2}");
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    let id1 = serde_json::from_str::<Value>(&b1).unwrap()["id"].clone();
    assert_eq!(serde_json::from_str::<Value>(&b2).unwrap()["id"], id1);
    // Another body under the same key: 422.
    let other = json!({"project": w.project, "command": ["false"], "gpus_per_task": 1}).to_string();
    let (s3, _, b3) = post("k-1", other.clone()).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    assert!(b3.contains("Idempotency-Key"), "{b3}");
    // A bad key is a 400 naming the header.
    let (s4, _, b4) = post("bad key", other.clone()).await;
    assert_eq!(s4, StatusCode::BAD_REQUEST, "{b4}");
    // A new key makes a new job; so does no key at all.
    let (s5, _, b5) = post("k-2", job.clone()).await;
    assert_eq!(s5, StatusCode::CREATED);
    assert_ne!(serde_json::from_str::<Value>(&b5).unwrap()["id"], id1);
    let list = h.ok(&w.member, "GET", "/v1/jobs", None, 200).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
    // Keys are per user: another member's k-1 is theirs.
    let (_, other_member) = h.user("ola", "member", Some(w.org), &[w.project]).await;
    let (s6, h6, _) = send(
        h,
        "POST",
        "/v1/jobs",
        &[
            ("authorization", &format!("Bearer {other_member}")),
            ("content-type", "application/json"),
            ("idempotency-key", "k-1"),
        ],
        &other,
    )
    .await;
    assert_eq!(s6, StatusCode::CREATED);
    assert!(h6.get("idempotent-replayed").is_none());

    // The other creating POSTs: an organisation, once.
    let admin = format!("Bearer {}", h.admin);
    let org = |name: &str| json!({"name": name, "country": "KR"}).to_string();
    let hs = [
        ("authorization", admin.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "org-1"),
    ];
    let (a, _, ab) = send(h, "POST", "/v1/orgs", &hs, &org("kisti")).await;
    let (b, bh, bb) = send(h, "POST", "/v1/orgs", &hs, &org("kisti")).await;
    assert_eq!(
        (a, b),
        (StatusCode::CREATED, StatusCode::CREATED),
        "{ab} {bb}"
    );
    assert_eq!(ab, bb);
    assert_eq!(bh.get("idempotent-replayed").unwrap(), "true");
    let (c, _, _) = send(h, "POST", "/v1/orgs", &hs, &org("etri")).await;
    assert_eq!(c, StatusCode::UNPROCESSABLE_ENTITY);
    let orgs = h.ok(&h.admin, "GET", "/v1/orgs", None, 200).await;
    let named = orgs
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["name"] == "kisti")
        .count();
    assert_eq!(named, 1);
}

#[tokio::test]
async fn idempotency_keys_answer_the_first_result_sqlite() {
    idempotency(Harness::sqlite().await).await;
}

#[tokio::test]
async fn idempotency_keys_answer_the_first_result_postgres() {
    idempotency(Harness::postgres().await).await;
}

async fn small_holes(h: Harness) {
    let w = world(h).await;
    let h = &w.h;
    // Pools are made by operators: an agent naming an unknown one is refused.
    let reg = |pool: &str| {
        json!({"name": "gpu-009", "pool": pool, "gpu_model": "H200", "gpus": 8,
               "cpu_milli": 64000, "memory_mib": 1000000})
    };
    let (s, v) = h
        .call(
            Some(&w.agent),
            "POST",
            "/v1/agent/register",
            Some(reg("rogue")),
        )
        .await;
    assert_eq!((s, field(&v)), (StatusCode::BAD_REQUEST, "pool"), "{v}");
    let pools = h.ok(&h.admin, "GET", "/v1/pools", None, 200).await;
    assert!(!pools.to_string().contains("rogue"), "{pools}");
    h.ok(
        &h.admin,
        "POST",
        "/v1/pools",
        Some(json!({"name": "rogue"})),
        201,
    )
    .await;
    h.ok(
        &w.agent,
        "POST",
        "/v1/agent/register",
        Some(reg("rogue")),
        200,
    )
    .await;
    // Another organisation's project reads as one that does not exist.
    let other_org = h.org("org-b").await;
    let theirs = h.project(other_org, "pb").await;
    let mk =
        |p: i64| json!({"name": format!("u{p}"), "role": "member", "org": w.org, "projects": [p]});
    let (s1, v1) = h
        .call(Some(&h.admin), "POST", "/v1/users", Some(mk(theirs)))
        .await;
    let (s2, v2) = h
        .call(Some(&h.admin), "POST", "/v1/users", Some(mk(999_999)))
        .await;
    assert_eq!((s1, s2), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    let m1 = v1["error"]["message"].as_str().unwrap();
    let m2 = v2["error"]["message"].as_str().unwrap();
    assert_eq!(
        m1.replace(&theirs.to_string(), "N"),
        m2.replace("999999", "N")
    );
}

#[tokio::test]
async fn unknown_pools_and_other_tenants_ids_are_refused_sqlite() {
    small_holes(Harness::sqlite().await).await;
}

#[tokio::test]
async fn unknown_pools_and_other_tenants_ids_are_refused_postgres() {
    small_holes(Harness::postgres().await).await;
}

#[tokio::test]
async fn metrics_labels_are_a_closed_set_and_the_token_is_required() {
    let h = Harness::sqlite().await;
    for m in ["FROBNICATE", "X-8KB-METHOD"] {
        send(&h, m, "/v1/whoami", &[], "").await;
    }
    send(&h, "GET", "/no/such/path/123", &[], "").await;
    let (s, _, text) = send(&h, "GET", "/metrics", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !text.contains("FROBNICATE") && !text.contains("X-8KB"),
        "{text}"
    );
    assert!(!text.contains("/no/such"), "{text}");
    assert!(text.contains("method=\"OTHER\""), "{text}");

    let h = h.with_state(|s| s.metrics_token = Some("scrape-secret-0123".into()));
    let (s, _, _) = send(&h, "GET", "/metrics", &[], "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(
        &h,
        "GET",
        "/metrics",
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, text) = send(
        &h,
        "GET",
        "/metrics",
        &[("authorization", "Bearer scrape-secret-0123")],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("haneul_api_request_seconds"), "{text}");
}

async fn token_expiry(h: Harness) {
    let w = world(h).await;
    let h = &w.h;
    let now = h.clock.now_ms();
    let mia = h.ok(&w.member, "GET", "/v1/whoami", None, 200).await;
    let mia_id = mia["id"].as_i64().unwrap();
    // An expired token, made under the API (the API's shortest expiry is a minute).
    let actor = haneul_store::Actor::system("test");
    h.store
        .create_token(
            &actor,
            mia_id,
            "old",
            &haneul_store::hash_token("hn_expired"),
            Some(now - 1),
            now - 10,
        )
        .await
        .unwrap();
    let (s, v) = h.call(Some("hn_expired"), "GET", "/v1/whoami", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    // A revoked one says so.
    let t = h
        .ok(
            &w.member,
            "POST",
            "/v1/tokens",
            Some(json!({"name": "laptop", "expires_in_s": 3600})),
            201,
        )
        .await;
    let exp = t["token"]["expires_at"].as_i64().unwrap();
    assert_eq!(exp, now + 3_600_000, "{t}");
    let secret = t["secret"].as_str().unwrap().to_string();
    h.ok(&secret, "GET", "/v1/whoami", None, 200).await;
    // One of the shortest life works to its last millisecond, and not at its end.
    let short = h
        .ok(
            &w.member,
            "POST",
            "/v1/tokens",
            Some(json!({"name": "ci", "expires_in_s": 60})),
            201,
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    h.clock.advance(Duration::from_millis(59_999));
    h.ok(&short, "GET", "/v1/whoami", None, 200).await;
    h.clock.advance(Duration::from_millis(1));
    let (s, v) = h.call(Some(&short), "GET", "/v1/whoami", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    h.ok(
        &w.member,
        "DELETE",
        &format!("/v1/tokens/{}", t["token"]["id"]),
        None,
        200,
    )
    .await;
    let (s, v) = h.call(Some(&secret), "GET", "/v1/whoami", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    // Out of range.
    let (s, v) = h
        .call(
            Some(&w.member),
            "POST",
            "/v1/tokens",
            Some(json!({"expires_in_s": 5})),
        )
        .await;
    assert_eq!(
        (s, field(&v)),
        (StatusCode::BAD_REQUEST, "expires_in_s"),
        "{v}"
    );
}

#[tokio::test]
async fn expired_and_revoked_tokens_say_which_sqlite() {
    token_expiry(Harness::sqlite().await).await;
}

#[tokio::test]
async fn expired_and_revoked_tokens_say_which_postgres() {
    token_expiry(Harness::postgres().await).await;
}

#[tokio::test]
async fn a_default_expiry_applies_to_peoples_tokens_not_agents() {
    let h = Harness::sqlite().await.with_state(|s| {
        let mut p = (*s.sessions).clone();
        p.default_token_ttl = Some(Duration::from_secs(90 * 86_400));
        s.sessions = std::sync::Arc::new(p);
    });
    let org = h.org("o").await;
    let (_, member) = h.user("m", "member", Some(org), &[]).await;
    let t = h
        .ok(&member, "POST", "/v1/tokens", Some(json!({})), 201)
        .await;
    let days = (t["token"]["expires_at"].as_i64().unwrap()
        - t["token"]["created_at"].as_i64().unwrap())
        / 86_400_000;
    assert_eq!(days, 90, "{t}");
    let a = h
        .ok(
            &h.admin,
            "POST",
            "/v1/users",
            Some(json!({"name": "ag", "role": "agent"})),
            201,
        )
        .await;
    let t = h
        .ok(
            &h.admin,
            "POST",
            "/v1/tokens",
            Some(json!({"user": a["id"]})),
            201,
        )
        .await;
    assert!(t["token"]["expires_at"].is_null(), "{t}");
}

/// Tampers with the audit log under the server as its database's owner can: drops the
/// append-only triggers first.
async fn tamper(h: &Harness, statement: &str) {
    let url = h.database();
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for s in [
            "DROP TRIGGER audit_no_update",
            "DROP TRIGGER audit_no_delete",
            statement,
        ] {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        for s in ["DROP TRIGGER audit_no_change ON audit", statement] {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

async fn broken_chain(h: Harness) {
    let w = world(h).await;
    let h = &w.h;
    let ok = h.ok(&h.admin, "GET", "/v1/audit/verify", None, 200).await;
    assert!(ok["entries"].as_i64().unwrap() >= 4, "{ok}");
    let third: i64 = h
        .ok(&h.admin, "GET", "/v1/audit?after=2&limit=1", None, 200)
        .await[0]["seq"]
        .as_i64()
        .unwrap();
    tamper(
        h,
        &format!("UPDATE audit SET detail = 'forged' WHERE seq = {third}"),
    )
    .await;
    let (s, v) = h
        .call(Some(&h.admin), "GET", "/v1/audit/verify", None)
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["error"]["code"], "audit_chain_broken", "{v}");
    assert_eq!(field(&v), "seq");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("entry {third}")),
        "{v}"
    );
}

#[tokio::test]
async fn a_broken_audit_chain_names_its_first_bad_entry_sqlite() {
    broken_chain(Harness::sqlite().await).await;
}

#[tokio::test]
async fn a_broken_audit_chain_names_its_first_bad_entry_postgres() {
    broken_chain(Harness::postgres().await).await;
}
