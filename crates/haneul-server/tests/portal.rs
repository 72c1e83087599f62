//! The portal's pages over the real router and a real SQLite store, request by request: the
//! session cookie, the Origin check on forms, tenant isolation (404 like the API), operator-only
//! pages, the language choice, and the forms that submit jobs and drain nodes.
//! The browser test (crates/haneul-cli/tests/portal.rs) drives the same pages in Chromium.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::Harness;
use haneul_model::GpuModel;
use haneul_server::controller::now_ms;
use haneul_store as st;
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt;

const HOST: &str = "portal.test:8470";
const ORIGIN: &str = "http://portal.test:8470";

struct Page {
    status: StatusCode,
    location: String,
    cookies: Vec<String>,
    body: String,
}

/// One browser-like request: `session` as the cookie, `extra` headers, a form body for POST.
async fn fetch(
    h: &Harness,
    method: &str,
    path: &str,
    session: Option<&str>,
    extra: &[(&str, &str)],
    form: Option<&str>,
) -> Page {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(s) = session {
        req = req.header(header::COOKIE, format!("haneul_session={s}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = match form {
        Some(f) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(f.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = h.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    Page {
        status,
        location,
        cookies,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn post(h: &Harness, path: &str, session: Option<&str>, form: &str) -> Page {
    fetch(h, "POST", path, session, &[("origin", ORIGIN)], Some(form)).await
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_refuses_bad_tokens() {
    let h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "pa").await;
    let (_, member) = h.user("mia", "member", Some(org), &[pa]).await;

    let ok = post(&h, "/portal/signin", None, &format!("token={member}")).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location, "/portal");
    let cookie = ok.cookies.first().expect("a session cookie");
    assert!(
        cookie.starts_with(&format!("haneul_session={member};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let bad = post(&h, "/portal/signin", None, "token=hn_0000").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("not valid"), "{}", bad.body);
    assert!(bad.cookies.is_empty());

    // A form posted from another site (or with no Origin at all) is refused before anything.
    let cross = fetch(
        &h,
        "POST",
        "/portal/signin",
        None,
        &[("origin", "http://evil.example")],
        Some(&format!("token={member}")),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let bare = fetch(&h, "POST", "/portal/signin", None, &[], Some("token=x")).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);

    // No session, or a revoked one: back to the sign-in page.
    let anon = fetch(&h, "GET", "/portal/jobs", None, &[], None).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.location, "/portal/signin");
    let stale = fetch(&h, "GET", "/portal", Some("hn_revoked"), &[], None).await;
    assert_eq!(stale.location, "/portal/signin");
    // A cookie that cannot be a token is no session either (and never reaches a header).
    let junk = fetch(&h, "GET", "/portal", Some("a\"b%c"), &[], None).await;
    assert_eq!(junk.location, "/portal/signin");

    // Agent tokens are for the agent protocol only.
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let a = post(&h, "/portal/signin", None, &format!("token={agent}")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn members_see_their_tenant_only_and_operators_see_the_fleet() {
    let mut h = Harness::sqlite().await;
    let org_a = h.org("org-a").await;
    let org_b = h.org("org-b").await;
    let pa = h.project(org_a, "alpha-proj").await;
    let pb = h.project(org_b, "beta-proj").await;
    let (_, mia) = h.user("mia", "member", Some(org_a), &[pa]).await;
    let (_, bo) = h.user("bo", "member", Some(org_b), &[pb]).await;
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-node-7").await;
    let job_a = h.submit(&mia, pa, 1).await;
    let job_b = h.submit(&bo, pb, 1).await;
    h.step().await;

    let jobs = fetch(&h, "GET", "/portal/jobs", Some(&mia), &[], None).await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(jobs.body.contains("alpha-proj"));
    assert!(
        jobs.body.contains(&format!("id=\"job-{job_a}\"")),
        "{}",
        jobs.body
    );
    assert!(!jobs.body.contains("beta-proj"));
    assert!(!jobs.body.contains(&format!("id=\"job-{job_b}\"")));
    assert!(
        !jobs.body.contains("/portal/fleet"),
        "members get no operator links"
    );

    let own = fetch(
        &h,
        "GET",
        &format!("/portal/jobs/{job_a}"),
        Some(&mia),
        &[],
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body.contains("id=\"cancel\""), "the owner may cancel");
    assert!(
        own.body.contains("id=\"attempts\""),
        "the running attempt: {}",
        own.body
    );
    let other = fetch(
        &h,
        "GET",
        &format!("/portal/jobs/{job_b}"),
        Some(&mia),
        &[],
        None,
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(other.body.contains("Not found"));
    assert!(!other.body.contains("beta-proj"));
    for path in [
        format!("/portal/jobs/{job_b}/logs"),
        format!("/portal/jobs/{job_b}/state"),
    ] {
        let p = fetch(&h, "GET", &path, Some(&mia), &[], None).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
    }
    let cancel = post(&h, &format!("/portal/jobs/{job_b}/cancel"), Some(&mia), "").await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    assert_eq!(h.job_state(job_b).await, "running");
    // The owner's cancel button works: the running job is asked to stop.
    let cancel = post(&h, &format!("/portal/jobs/{job_a}/cancel"), Some(&mia), "").await;
    assert_eq!(cancel.status, StatusCode::SEE_OTHER, "{}", cancel.body);
    assert_eq!(cancel.location, format!("/portal/jobs/{job_a}"));
    assert_eq!(h.job_state(job_a).await, "stopping");

    // Operator pages do not exist for members, and members cannot drain.
    for path in ["/portal/fleet", "/portal/audit"] {
        let p = fetch(&h, "GET", path, Some(&mia), &[], None).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
    }
    let drain = post(&h, &format!("/portal/nodes/{node}/drain"), Some(&mia), "").await;
    assert_eq!(drain.status, StatusCode::FORBIDDEN);

    let admin = h.admin.clone();
    let fleet = fetch(&h, "GET", "/portal/fleet", Some(&admin), &[], None).await;
    assert_eq!(fleet.status, StatusCode::OK, "{}", fleet.body);
    assert!(fleet.body.contains("gpu-node-7"));
    // 8 H200: two running jobs hold one GPU each, six idle.
    assert!(
        fleet
            .body
            .contains("<td>H200</td><td>8</td><td>2</td><td>6</td><td>0</td><td>0</td>"),
        "{}",
        fleet.body
    );
    assert!(fleet.body.contains("<svg"), "the usage chart");
    assert!(fleet.body.contains(&format!("id=\"drain-{node}\"")));

    // A drain from another site is refused; from the page it is done.
    let cross = fetch(
        &h,
        "POST",
        &format!("/portal/nodes/{node}/drain"),
        Some(&admin),
        &[("origin", "http://evil.example")],
        Some(""),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let n = h
        .ok(&admin, "GET", &format!("/v1/nodes/{node}"), None, 200)
        .await;
    assert_eq!(n["state"], "up");
    let drained = post(&h, &format!("/portal/nodes/{node}/drain"), Some(&admin), "").await;
    assert_eq!(drained.status, StatusCode::SEE_OTHER);
    let n = h
        .ok(&admin, "GET", &format!("/v1/nodes/{node}"), None, 200)
        .await;
    assert_eq!(n["state"], "draining");

    let audit = fetch(
        &h,
        "GET",
        "/portal/audit?action=node",
        Some(&admin),
        &[],
        None,
    )
    .await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("node."), "{}", audit.body);
    assert!(
        !audit.body.contains("<td>project."),
        "filtered to node actions"
    );
}

#[tokio::test]
async fn the_form_submits_jobs_and_keeps_what_was_typed_when_refused() {
    let h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "pa").await;
    let (_, mia) = h.user("mia", "member", Some(org), &[pa]).await;

    let ok = post(
        &h,
        "/portal/jobs",
        Some(&mia),
        &format!("project={pa}&name=train&gpus=2&nodes=1&time=30&command=echo+hi"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let id: i64 = ok
        .location
        .trim_start_matches("/portal/jobs/")
        .parse()
        .unwrap();
    let job = h
        .ok(&mia, "GET", &format!("/v1/jobs/{id}"), None, 200)
        .await;
    assert_eq!(job["job"]["command"], json!(["sh", "-c", "echo hi"]));
    assert_eq!(job["job"]["gpus_per_task"], 2);
    assert_eq!(job["job"]["time_limit_s"], 1800);
    assert_eq!(job["job"]["name"], "train");

    let bad = post(
        &h,
        "/portal/jobs",
        Some(&mia),
        &format!("project={pa}&name=keep-me&gpus=two&command=echo+hi"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("<b>gpus</b>"), "{}", bad.body);
    assert!(
        bad.body.contains("value=\"keep-me\""),
        "typed values survive"
    );

    // The API's own refusal comes back naming its field.
    let huge = post(
        &h,
        "/portal/jobs",
        Some(&mia),
        &format!("project={pa}&gpus=100000&command=true"),
    )
    .await;
    assert_eq!(huge.status, StatusCode::BAD_REQUEST, "{}", huge.body);
    assert!(huge.body.contains("gpus_per_task"), "{}", huge.body);
}

#[tokio::test]
async fn language_follows_the_browser_unless_switched() {
    let h = Harness::sqlite().await;
    let page = fetch(
        &h,
        "GET",
        "/portal/signin",
        None,
        &[("accept-language", "ko-KR,ko;q=0.9,en;q=0.8")],
        None,
    )
    .await;
    assert!(page.body.contains("<html lang=\"ko\">"));
    assert!(page.body.contains("로그인"));
    let en = fetch(
        &h,
        "GET",
        "/portal/signin",
        None,
        &[("accept-language", "ko-KR"), ("cookie", "haneul_lang=en")],
        None,
    )
    .await;
    assert!(en.body.contains("<html lang=\"en\">") && en.body.contains("Sign in"));
    let switch = fetch(
        &h,
        "GET",
        "/portal/lang/ko?back=/portal/jobs",
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(switch.location, "/portal/jobs");
    assert!(switch.cookies[0].starts_with("haneul_lang=ko;"));
    let away = fetch(
        &h,
        "GET",
        "/portal/lang/ko?back=https://evil.example",
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(away.location, "/portal", "never an open redirect");

    let css = fetch(&h, "GET", "/portal/assets/htmx.min.js", None, &[], None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("htmx"));
}

/// The figures as the portal prints them (`chart::figure`): one decimal, three below ten.
fn figure(v: f64) -> String {
    if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[tokio::test]
async fn home_shows_each_awards_balance_as_the_api_has_it() {
    let mut h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "alpha-proj").await;
    let (_, mia) = h.user("mia", "member", Some(org), &[pa]).await;
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-node-1").await;
    let admin = st::Actor::system("test");
    let h200 = GpuModel::new("H200").unwrap();
    let award = h
        .store
        .create_award(
            &admin,
            st::NewAward {
                project_id: pa,
                gpu_model: h200.clone(),
                gpu_hours: 10_000,
                valid_from: 0,
                valid_until: now_ms() + 30 * 86_400_000,
                gpu_quota: 0,
                application_id: None,
            },
            1,
        )
        .await
        .unwrap()
        .id;
    // A dear GPU class, so a job of some milliseconds charges whole GPU-hours.
    h.store
        .set_gpu_weight(&admin, &h200, 1_000_000_000, now_ms())
        .await
        .unwrap();
    let job = h.submit(&mia, pa, 1).await;
    h.step().await;
    for exit in [None, Some(0)] {
        if exit.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.ok(
            &agent,
            "POST",
            &format!("/v1/agent/nodes/{node}/reports"),
            Some(json!({"job": job, "fence": 1, "task": 0, "exit_code": exit})),
            200,
        )
        .await;
    }
    h.step().await;
    assert_eq!(h.job_state(job).await, "succeeded");

    let balances = h.ok(&mia, "GET", "/v1/balances", None, 200).await;
    let b = &balances.as_array().unwrap()[0];
    assert_eq!(b["award"], award, "{balances}");
    let used = b["gpu_hours_used"].as_f64().unwrap();
    assert!(used > 1.0, "the ledger charged the job: {balances}");
    let (granted, left) = (
        b["gpu_hours_granted"].as_f64().unwrap(),
        b["gpu_hours_left"].as_f64().unwrap(),
    );
    assert_eq!(granted, 10_000.0);

    let home = fetch(
        &h,
        "GET",
        "/portal",
        Some(&mia),
        &[("accept-language", "en")],
        None,
    )
    .await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let body = &home.body;
    let row = &body[body
        .find(&format!("id=\"award-{award}\""))
        .unwrap_or_else(|| panic!("a row for award {award}: {body}"))..];
    let row = &row[..row.find("</tr>").unwrap()];
    for (class, v) in [("granted", granted), ("used", used), ("left", left)] {
        assert!(
            row.contains(&format!("<td class=\"{class}\">{}</td>", figure(v))),
            "{class} {v}: {row}"
        );
    }
    assert!(row.contains("<td class=\"state\">Active</td>"), "{row}");
    let until = &b["valid_until"];
    assert!(row.contains("<time datetime=\"20"), "{until}: {row}");
    // The bar: used against granted, named for screen readers.
    let label = format!(
        "Award #{award} H200: {} / {} GPU-hours used of granted",
        figure(used),
        figure(granted)
    );
    assert!(row.contains(&format!("aria-label=\"{label}\"")), "{row}");
    assert!(row.contains("<title>"), "{row}");

    let ko = fetch(
        &h,
        "GET",
        "/portal",
        Some(&mia),
        &[("accept-language", "ko")],
        None,
    )
    .await;
    assert!(ko.body.contains("배정 잔액") && ko.body.contains("남은 GPU 시간"));
    assert!(
        ko.body.contains("<td class=\"state\">사용 중</td>"),
        "{}",
        ko.body
    );
}
