//! The portal's pages over the real router and a real SQLite store, request by request: the
//! session cookie, the Origin check on forms, tenant isolation (404 like the API), operator-only
//! pages, the language choice, and the forms that submit jobs and drain nodes.
//! The browser test (crates/haneul-cli/tests/portal.rs) drives the same pages in Chromium.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::Harness;
use haneul_model::GpuModel;
use haneul_server::clock::Clock;
use haneul_store as st;
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt;

const HOST: &str = "portal.test:8470";
const ORIGIN: &str = "http://portal.test:8470";

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
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
        // Tests name sessions by their token; the browser's cookie is the session it gets.
        let id = h.portal_session(s, HOST).await;
        req = req.header(header::COOKIE, format!("haneul_session={id}"));
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
    let headers = resp.headers().clone();
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
        headers,
        location,
        cookies,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// The job a successful submission form redirected to.
fn submitted_job(page: Page) -> i64 {
    page.location
        .trim_start_matches("/portal/jobs/")
        .parse()
        .unwrap_or_else(|_| panic!("not a job page: {}", page.location))
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
    // The cookie holds a session id of the portal's own, never the token.
    assert!(cookie.starts_with("haneul_session=hn_"), "{cookie}");
    assert!(!cookie.contains(&member), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");

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
async fn pages_carry_security_headers_and_forms_must_come_from_this_origin() {
    let h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "pa").await;
    let (_, member) = h.user("mia", "member", Some(org), &[pa]).await;
    let header = |p: &Page, name: &str| {
        p.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    for (path, session) in [
        ("/portal/signin", None),
        ("/portal", Some(member.as_str())),
        ("/portal/jobs", Some(member.as_str())),
        ("/portal/no-such-page", Some(member.as_str())),
    ] {
        let page = fetch(&h, "GET", path, session, &[], None).await;
        let csp = header(&page, "content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP lacks {part}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header(&page, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&page, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&page, "referrer-policy"), "same-origin", "{path}");
        assert_eq!(header(&page, "cache-control"), "no-store", "{path}");
    }
    // The pages themselves keep to the policy: no inline script, no style attribute.
    let home = fetch(&h, "GET", "/portal", Some(&member), &[], None).await;
    assert!(
        !home.body.contains("<script>"),
        "inline script in the home page"
    );
    assert!(
        !home.body.contains(" style="),
        "inline style in the home page"
    );
    let asset = fetch(&h, "GET", "/portal/assets/portal.css", None, &[], None).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(header(&asset, "x-content-type-options"), "nosniff");
    assert_ne!(
        header(&asset, "cache-control"),
        "no-store",
        "assets may be cached"
    );

    // The Origin must match in scheme too: a server reached over plain HTTP refuses a form
    // whose page claims to be https (and the other way round is covered by the unit test).
    let https = fetch(
        &h,
        "POST",
        "/portal/signin",
        None,
        &[("origin", "https://portal.test:8470")],
        Some(&format!("token={member}")),
    )
    .await;
    assert_eq!(https.status, StatusCode::FORBIDDEN);
    let other_port = fetch(
        &h,
        "POST",
        "/portal/signin",
        None,
        &[("origin", "http://portal.test:8471")],
        Some(&format!("token={member}")),
    )
    .await;
    assert_eq!(other_port.status, StatusCode::FORBIDDEN);
    let ok = post(&h, "/portal/signin", None, &format!("token={member}")).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);

    // A form's address opened as a page (a reload of its result, a bookmark) leads to the page
    // the form belongs to, never a bare 405.
    for (path, to) in [
        ("/portal/jobs/7/cancel", "/portal/jobs/7"),
        ("/portal/signout", "/portal"),
        ("/portal/nodes/3/drain", "/portal/fleet"),
        ("/portal/calls/2/state", "/portal/calls/2"),
        ("/portal/calls/2/award", "/portal/calls/2"),
        (
            "/portal/calls/2/applications/5/scores",
            "/portal/calls/2#app-5",
        ),
    ] {
        let page = fetch(&h, "GET", path, Some(&member), &[], None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location, to, "{path}");
    }
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
    // The owner's cancel button asks for a reason first and does nothing until given one.
    let asked = post(&h, &format!("/portal/jobs/{job_a}/cancel"), Some(&mia), "").await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("id=\"confirm-form\""), "{}", asked.body);
    assert_eq!(h.job_state(job_a).await, "running");
    let cancel = post(
        &h,
        &format!("/portal/jobs/{job_a}/cancel"),
        Some(&mia),
        "confirmed=1&reason=wrong+data+set",
    )
    .await;
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
    let asked = post(&h, &format!("/portal/nodes/{node}/drain"), Some(&admin), "").await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.body.contains("gpu-node-7") && asked.body.contains("id=\"reason\""));
    let n = h
        .ok(&admin, "GET", &format!("/v1/nodes/{node}"), None, 200)
        .await;
    assert_eq!(n["state"], "up", "asking to confirm drains nothing");
    let drained = post(
        &h,
        &format!("/portal/nodes/{node}/drain"),
        Some(&admin),
        "confirmed=1&reason=fan+replacement",
    )
    .await;
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
        audit.body.contains("fan replacement"),
        "the reason: {}",
        audit.body
    );
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
    let id = submitted_job(ok);
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
    // ... named as the form's field, beside what was typed.
    assert!(huge.body.contains("<b>gpus</b>"), "{}", huge.body);

    // The fuller form: GPU models, CPUs and memory, priority, dependency.
    let full = post(
        &h,
        "/portal/jobs",
        Some(&mia),
        &format!(
            "project={pa}&name=full&gpus=1&nodes=1&gpu_model=H200%2C+B200&cpus=2.5&memory=16\
             &priority=high&dependency=afterok%3A{id}&command=python+train.py"
        ),
    )
    .await;
    assert_eq!(full.status, StatusCode::SEE_OTHER, "{}", full.body);
    let full_id = submitted_job(full);
    let job = h
        .ok(&mia, "GET", &format!("/v1/jobs/{full_id}"), None, 200)
        .await;
    assert_eq!(job["job"]["gpu_models"], json!(["H200", "B200"]));
    assert_eq!(job["job"]["priority"], "high");
    assert_eq!(
        job["job"]["dependencies"],
        json!([{"kind": "afterok", "job": id}])
    );
    // A CPU-only job without CPUs: the API's complaint is shown at the form's CPU field.
    let no_cpu = post(
        &h,
        "/portal/jobs",
        Some(&mia),
        &format!("project={pa}&gpus=0&command=true"),
    )
    .await;
    assert_eq!(no_cpu.status, StatusCode::BAD_REQUEST, "{}", no_cpu.body);
    assert!(no_cpu.body.contains("<b>cpus</b>"), "{}", no_cpu.body);
    for (form, field) in [
        ("cpus=lots", "cpus"),
        ("memory=-1", "memory"),
        ("priority=asap", "priority"),
        ("dependency=after%3A1", "dependency"),
    ] {
        let bad = post(
            &h,
            "/portal/jobs",
            Some(&mia),
            &format!("project={pa}&gpus=1&command=true&{form}"),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{form}");
        assert!(
            bad.body.contains(&format!("<b>{field}</b>")),
            "{form}: {}",
            bad.body
        );
    }

    // "Submit again" fills the form as the job was submitted.
    let again = fetch(
        &h,
        "GET",
        &format!("/portal/jobs?again={full_id}"),
        Some(&mia),
        &[],
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    for shown in [
        "value=\"full\"",
        "value=\"H200,B200\"",
        "python train.py",
        &format!("value=\"afterok:{id}\""),
        "<option value=\"high\" selected>",
    ] {
        assert!(
            again.body.contains(shown),
            "{shown} not in the form: {}",
            again.body
        );
    }
    let page = fetch(
        &h,
        "GET",
        &format!("/portal/jobs/{full_id}"),
        Some(&mia),
        &[],
        None,
    )
    .await;
    assert!(
        page.body
            .contains(&format!("href=\"/portal/jobs?again={full_id}\"")),
        "{}",
        page.body
    );
    // The job page says who submitted it, in the centre's time zone with the zone shown.
    assert!(page.body.contains("id=\"submitter\">mia<"), "{}", page.body);
    assert!(page.body.contains("KST"), "{}", page.body);
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
                valid_until: h.clock.now_ms() + 30 * 86_400_000,
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
        .set_gpu_weight(&admin, &h200, 1_000_000_000, h.clock.now_ms())
        .await
        .unwrap();
    let job = h.submit(&mia, pa, 1).await;
    h.step().await;
    for exit in [None, Some(0)] {
        if exit.is_some() {
            h.clock.advance(Duration::from_millis(20));
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

/// The fleet page against a known fleet: three nodes of 8 H200, one draining and one down; on
/// the one up, whole-GPU jobs of 2 and 1 GPUs and a half-GPU job; an 8-GPU job that cannot
/// start. The page prints what `/v1/fleet/summary` says, and that is the known fleet.
#[tokio::test]
async fn fleet_page_counts_come_from_the_summary_of_a_known_fleet() {
    let mut h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "alpha-proj").await;
    let (_, mia) = h.user("mia", "member", Some(org), &[pa]).await;
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let up = h.node(&agent, "gpu-up").await;
    let draining = h.node(&agent, "gpu-draining").await;
    let down = h.node(&agent, "gpu-down").await;
    let admin = h.admin.clone();
    h.ok(
        &admin,
        "POST",
        &format!("/v1/nodes/{draining}/state"),
        Some(json!({"state": "draining"})),
        200,
    )
    .await;
    // The third node's agent goes quiet: it is declared lost, and so down.
    let now = h.clock.now_ms();
    h.store
        .heartbeats(&[up, draining], now + 60_000)
        .await
        .unwrap();
    assert_eq!(
        h.store
            .mark_lost_nodes(now + 30_000, now + 60_000)
            .await
            .unwrap(),
        vec![down]
    );
    h.submit(&mia, pa, 2).await;
    h.submit(&mia, pa, 1).await;
    h.ok(
        &mia,
        "POST",
        "/v1/jobs",
        Some(
            json!({"project": pa, "command": ["true"], "gpus_per_task": 0,
                    "gpu_fraction_milli": 500}),
        ),
        201,
    )
    .await;
    // The small jobs start first; submitted with them, the whole-node job would go first
    // (docs/scheduling.md).
    h.step().await;
    let big = h.submit(&mia, pa, 8).await;
    h.step().await;
    assert_eq!(h.job_state(big).await, "queued");

    let s = h.ok(&admin, "GET", "/v1/fleet/summary", None, 200).await;
    assert_eq!(
        s["gpus"],
        json!([{"pool": s["gpus"][0]["pool"], "pool_name": "default", "gpu_model": "H200",
                "nodes": 3, "total": 24, "allocated": 4, "allocated_milli": 3500,
                "idle": 4, "draining": 8, "down": 8}]),
        "{s}"
    );
    assert_eq!(
        s["queue"],
        json!([{"project": pa, "project_name": "alpha-proj", "org": org, "queued_jobs": 1,
                "queued_gpu_milli": 8000, "running_jobs": 3}]),
        "{s}"
    );
    assert_eq!(
        s["nodes"],
        json!([{"node": up, "allocated": 4, "allocated_milli": 3500}])
    );

    let page = fetch(&h, "GET", "/portal/fleet", Some(&admin), &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let g = &s["gpus"][0];
    let row = format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td>",
        g["pool_name"].as_str().unwrap(),
        g["gpu_model"].as_str().unwrap(),
        g["total"],
        g["allocated"],
        g["idle"],
        g["draining"],
        g["down"],
        g["allocated_milli"].as_i64().unwrap() as f64 / 1000.0
    );
    assert_eq!(
        row,
        "<td>default</td><td>H200</td><td>24</td><td>4</td><td>4</td><td>8</td><td>8</td><td>3.50</td>"
    );
    assert!(page.body.contains(&row), "{}", page.body);
    assert!(
        page.body
            .contains("<td>alpha-proj</td><td>1</td><td>8.0</td><td>3</td>"),
        "{}",
        page.body
    );
    for (node, name, allocated, state) in [
        (up, "gpu-up", 4, "up"),
        (draining, "gpu-draining", 0, "draining"),
        (down, "gpu-down", 0, "down"),
    ] {
        let at = page
            .body
            .find(&format!("id=\"node-{node}\""))
            .unwrap_or_else(|| panic!("a row for {name}"));
        let tr = &page.body[at..];
        let tr = &tr[..tr.find("</tr>").unwrap()];
        assert!(
            tr.contains(&format!(
                "<td>{name}</td><td>default</td><td>H200</td><td>8</td><td>{allocated}</td>"
            )),
            "{tr}"
        );
        assert!(tr.contains(&format!(">{state}</span>")), "{tr}");
    }
}

#[tokio::test]
async fn the_fleet_summary_is_for_operators_only() {
    let h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "pa").await;
    let (_, auditor) = h.user("aud", "auditor", None, &[]).await;
    let (_, orgadmin) = h.user("oa", "org-admin", Some(org), &[]).await;
    let (_, member) = h.user("mia", "member", Some(org), &[pa]).await;
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let admin = h.admin.clone();
    for (who, token, want) in [
        ("centre-admin", Some(admin.as_str()), 200),
        ("auditor", Some(auditor.as_str()), 200),
        ("org-admin", Some(orgadmin.as_str()), 403),
        ("member", Some(member.as_str()), 403),
        ("agent", Some(agent.as_str()), 403),
        ("nobody", None, 401),
    ] {
        let (status, v) = h.call(token, "GET", "/v1/fleet/summary", None).await;
        assert_eq!(status.as_u16(), want, "{who}: {v}");
        if want != 200 {
            assert!(v["error"]["code"].is_string(), "{who}: {v}");
        }
    }
    // On the portal the page is the operators': 404 to the others, read-only to auditors.
    let page = fetch(&h, "GET", "/portal/fleet", Some(&auditor), &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("id=\"drain-"));
    for token in [&orgadmin, &member] {
        let page = fetch(&h, "GET", "/portal/fleet", Some(token), &[], None).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
    }
}

/// 2026-01-01 00:00 UTC.
const DAY0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;

/// Runs `job` on `gpus` of `node` from `from` to `until`, straight through the store, so its
/// ledger charge has known times.
async fn run_between(h: &Harness, job: i64, node: i64, gpus: Vec<u32>, from: i64, until: i64) {
    let epoch = h
        .store
        .acquire_lease("controller", "portal-test", 30 * 86_400_000, from)
        .await
        .unwrap()
        .expect("the lease is free");
    let (started, skipped) = h
        .store
        .start_attempts(
            "portal-test",
            epoch,
            vec![st::NewAttempt {
                job_id: job,
                placement: haneul_sched::Placement {
                    tasks: vec![haneul_sched::TaskPlacement {
                        node: haneul_model::NodeId(node as u32),
                        gpus,
                        milli_per_gpu: haneul_model::MilliGpu(1000),
                    }],
                },
                gpu_model: Some(GpuModel::new("H200").unwrap()),
                borrowing: false,
            }],
            from,
        )
        .await
        .unwrap();
    assert!(skipped.is_empty());
    for (exit_code, at) in [(None, from), (Some(0), until)] {
        h.store
            .report_task(
                st::TaskReport {
                    node,
                    job,
                    fence: started[0].fence,
                    task: 0,
                    exit_code,
                },
                at,
            )
            .await
            .unwrap();
    }
}

struct Tenants {
    h: Harness,
    org_a: i64,
    org_b: i64,
    pa: i64,
    pb: i64,
    mia: String,
    bo: String,
    orgadmin_a: String,
    auditor: String,
}

/// Two organisations with a project each, and charges at known times: in alpha-proj (org-a)
/// 2 GPUs 10:30-12:15 and 1 GPU 23:30-00:30 across midnight on 2026-01-01; in beta-proj
/// (org-b) 1 GPU 11:00-11:30; and alpha-proj 1 GPU for the last two hours before now.
async fn charged_tenants() -> Tenants {
    // A centre on UTC, so that the hand-computed buckets below are UTC hours and days (the
    // calendar's own tests cover other zones).
    let h = Harness::sqlite().await.with_state(|s| {
        s.accounting = std::sync::Arc::new(haneul_server::accounting::AccountingPolicy {
            time_zone: haneul_server::calendar::Calendar::new("UTC").unwrap(),
            ..Default::default()
        })
    });
    let org_a = h.org("org-a").await;
    let org_b = h.org("org-b").await;
    let pa = h.project(org_a, "alpha-proj").await;
    let pb = h.project(org_b, "beta-proj").await;
    let (_, mia) = h.user("mia", "member", Some(org_a), &[pa]).await;
    let (_, bo) = h.user("bo", "member", Some(org_b), &[pb]).await;
    let (_, orgadmin_a) = h.user("oa", "org-admin", Some(org_a), &[]).await;
    let (_, auditor) = h.user("aud", "auditor", None, &[]).await;
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-1").await;
    let now = h.clock.now_ms();
    for (token, project, gpus, from, until) in [
        (
            &mia,
            pa,
            vec![0, 1],
            DAY0 + 10 * HOUR + HOUR / 2,
            DAY0 + 12 * HOUR + HOUR / 4,
        ),
        (
            &bo,
            pb,
            vec![2],
            DAY0 + 11 * HOUR,
            DAY0 + 11 * HOUR + HOUR / 2,
        ),
        (
            &mia,
            pa,
            vec![3],
            DAY0 + 23 * HOUR + HOUR / 2,
            DAY0 + 24 * HOUR + HOUR / 2,
        ),
        (&mia, pa, vec![4], now - 2 * HOUR, now),
    ] {
        let job = h.submit(token, project, gpus.len() as u32).await;
        run_between(&h, job, node, gpus, from, until).await;
    }
    Tenants {
        h,
        org_a,
        org_b,
        pa,
        pb,
        mia,
        bo,
        orgadmin_a,
        auditor,
    }
}

fn hours(line: &serde_json::Value, key: &str) -> Vec<f64> {
    line[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

#[tokio::test]
async fn usage_series_splits_charges_across_buckets_and_adds_up_to_the_ledger() {
    let t = charged_tenants().await;
    let h = &t.h;
    let admin = h.admin.clone();
    let s = h
        .ok(
            &admin,
            "GET",
            "/v1/usage/series?by=project&bucket=hour&from=2026-01-01&to=2026-01-02",
            None,
            200,
        )
        .await;
    assert_eq!(
        (s["by"].as_str(), s["bucket"].as_str()),
        (Some("project"), Some("hour"))
    );
    assert_eq!(
        (s["from"].as_i64(), s["to"].as_i64()),
        (Some(DAY0), Some(DAY0 + 24 * HOUR))
    );
    let starts = s["starts"].as_array().unwrap();
    assert_eq!(starts.len(), 24);
    assert_eq!(starts[11].as_i64(), Some(DAY0 + 11 * HOUR));
    let lines = s["lines"].as_array().unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![t.pa, t.pb]
    );
    assert_eq!(lines[0]["name"], "alpha-proj");
    // 2 GPUs from 10:30 to 12:15: 30, 60 and 15 minutes; and the first half hour of the
    // midnight run at 23:30.
    let mut want = vec![0.0; 24];
    (want[10], want[11], want[12], want[23]) = (1.0, 2.0, 0.5, 0.5);
    let pa_hours = hours(&lines[0], "gpu_hours");
    assert!(close(&pa_hours, &want), "{pa_hours:?}");
    let mut want_b = vec![0.0; 24];
    want_b[11] = 0.5;
    assert!(close(&hours(&lines[1], "gpu_hours"), &want_b));
    // Charged at the H200 class weight in each bucket.
    let charged = hours(&lines[0], "charged_gpu_hours");
    let weighted: Vec<f64> = want.iter().map(|v| v * 1.3).collect();
    assert!(close(&charged, &weighted), "{charged:?}");

    // Per day, the buckets of a project add up to its ledger charges exactly.
    let d = h
        .ok(
            &admin,
            "GET",
            "/v1/usage/series?by=project&bucket=day&from=2026-01-01&to=2026-01-03",
            None,
            200,
        )
        .await;
    let pa_line = &d["lines"][0];
    assert!(close(&hours(pa_line, "gpu_hours"), &[4.0, 0.5]), "{d}");
    let ledger = h
        .ok(
            &admin,
            "GET",
            &format!(
                "/v1/ledger?project={}&until={}",
                t.pa,
                DAY0 + 2 * 86_400_000
            ),
            None,
            200,
        )
        .await;
    let charged_ms: i64 = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["charged_ms"].as_i64().unwrap())
        .sum();
    assert_eq!(ledger.as_array().unwrap().len(), 2, "{ledger}");
    let series_ms: i64 = pa_line["charged_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(series_ms, charged_ms);

    // By organisation, with the names.
    let o = h
        .ok(
            &admin,
            "GET",
            "/v1/usage/series?by=org&bucket=day&from=2026-01-01&to=2026-01-03",
            None,
            200,
        )
        .await;
    let names: Vec<&str> = o["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["org-a", "org-b"]);
    assert_eq!(o["lines"][0]["id"].as_i64(), Some(t.org_a));
    assert!(close(&hours(&o["lines"][1], "gpu_hours"), &[0.5, 0.0]));
}

#[tokio::test]
async fn usage_series_is_scoped_like_usage_and_the_home_page_draws_it() {
    let t = charged_tenants().await;
    let h = &t.h;
    let q = "/v1/usage/series?by=project&bucket=day&from=2026-01-01&to=2026-01-03";
    let ids = |v: &serde_json::Value| -> Vec<i64> {
        v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&h.ok(&t.mia, "GET", q, None, 200).await), vec![t.pa]);
    assert_eq!(ids(&h.ok(&t.bo, "GET", q, None, 200).await), vec![t.pb]);
    assert_eq!(
        ids(&h.ok(&t.orgadmin_a, "GET", q, None, 200).await),
        vec![t.pa]
    );
    assert_eq!(
        ids(&h.ok(&t.auditor, "GET", q, None, 200).await),
        vec![t.pa, t.pb]
    );
    let by_org = q.replace("by=project", "by=org");
    assert_eq!(
        ids(&h.ok(&t.bo, "GET", &by_org, None, 200).await),
        vec![t.org_b]
    );
    assert_eq!(
        ids(&h.ok(&t.mia, "GET", &by_org, None, 200).await),
        vec![t.org_a]
    );

    // The researcher's home page: the last 30 days of their project, a chart and its table.
    let mia = t.mia.as_str();
    let home_in = |lang: &'static str| async move {
        let header = [("accept-language", lang)];
        fetch(h, "GET", "/portal", Some(mia), &header, None).await
    };
    let home = home_in("en").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let body = &home.body;
    assert!(
        body.contains("<title>Award GPU-hours charged per day"),
        "{body}"
    );
    assert!(body.contains("data-series=\"alpha-proj\""), "{body}");
    assert!(body.contains("id=\"series-project\""), "{body}");
    assert!(!body.contains("beta-proj"));
    // Two hours on one GPU at the H200 weight, split over one or two UTC days.
    let table = &body[body.find("id=\"series-project\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let total = &table[table.find("<tfoot>").unwrap()..];
    assert!(total.contains("<td>2.600</td>"), "{table}");
    let ko = home_in("ko").await;
    assert!(
        ko.body.contains("프로젝트별 일일 배정 GPU 시간 차감"),
        "{}",
        ko.body
    );

    // The operators' fleet page draws every organisation over time.
    let admin = h.admin.clone();
    let fleet = fetch(h, "GET", "/portal/fleet", Some(&admin), &[], None).await;
    assert!(
        fleet.body.contains("data-series=\"org-a\""),
        "{}",
        fleet.body
    );
    assert!(fleet.body.contains("id=\"series-org\""));
    assert!(fleet.body.contains("role=\"img\""));
}

#[tokio::test]
async fn usage_series_names_the_bad_parameter() {
    let h = Harness::sqlite().await;
    let admin = h.admin.clone();
    for (query, field) in [
        ("by=team", "by"),
        ("bucket=week", "bucket"),
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-01-02&to=2026-01-01", "to"),
        ("bucket=hour&from=2026-01-01&to=2026-03-01", "from"),
        ("colour=red", "colour"),
    ] {
        let (status, v) = h
            .call(
                Some(&admin),
                "GET",
                &format!("/v1/usage/series?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(v["error"]["field"], field, "{query}: {v}");
    }
    let (_, v) = h
        .call(
            Some(&admin),
            "GET",
            "/v1/usage/series?bucket=hour&from=2026-01-01&to=2026-03-01",
            None,
        )
        .await;
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1416") && message.contains("1000"),
        "{message}"
    );
}

fn job_ids(body: &str) -> Vec<i64> {
    body.match_indices("<tr id=\"job-")
        .map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

fn link(body: &str, id: &str) -> Option<String> {
    let pattern = format!("id=\"{id}\" href=\"");
    let rest = &body[body.find(&pattern)? + pattern.len()..];
    Some(rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_job_list_pages_through_the_callers_jobs_only() {
    let h = Harness::sqlite().await;
    let org_a = h.org("org-a").await;
    let org_b = h.org("org-b").await;
    let pa = h.project(org_a, "alpha-proj").await;
    let pb = h.project(org_b, "beta-proj").await;
    let (_, mia) = h.user("mia", "member", Some(org_a), &[pa]).await;
    let (_, bo) = h.user("bo", "member", Some(org_b), &[pb]).await;
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..60 {
        mine.push(h.submit(&mia, pa, 1).await);
        if i % 12 == 0 {
            theirs.push(h.submit(&bo, pb, 1).await);
        }
    }

    let first = fetch(&h, "GET", "/portal/jobs", Some(&mia), &[], None).await;
    assert_eq!(first.status, StatusCode::OK);
    let page1 = job_ids(&first.body);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], *mine.last().unwrap(), "newest first");
    assert!(
        first.body.contains("hx-get=\"/portal/jobs/rows\""),
        "the first page refreshes itself"
    );
    assert!(link(&first.body, "newer").is_none());
    let older = link(&first.body, "older").expect("an older page");
    assert!(older.starts_with("/portal/jobs?before="), "{older}");

    let second = fetch(&h, "GET", &older, Some(&mia), &[], None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let page2 = job_ids(&second.body);
    assert_eq!(page2.len(), 10);
    assert!(page2.iter().all(|id| !page1.contains(id)), "no overlap");
    let mut all: Vec<i64> = page1.iter().chain(&page2).copied().collect();
    all.sort();
    assert_eq!(all, mine, "the two pages are exactly mia's jobs");
    assert!(
        theirs
            .iter()
            .all(|id| !page2.contains(id) && !page1.contains(id))
    );
    assert!(!second.body.contains("beta-proj"));
    assert!(
        !second.body.contains("hx-get=\"/portal/jobs/rows\""),
        "older pages stand still"
    );
    assert!(link(&second.body, "older").is_none(), "the last page");
    let newer = link(&second.body, "newer").expect("a newer page");
    let back = fetch(&h, "GET", &newer, Some(&mia), &[], None).await;
    assert_eq!(job_ids(&back.body), page1);

    // A page reached through others goes back along its trail of cursors.
    let before = page1[19];
    let p2 = fetch(
        &h,
        "GET",
        &format!("/portal/jobs?before={before}&trail=999"),
        Some(&mia),
        &[],
        None,
    )
    .await;
    assert_eq!(
        link(&p2.body, "newer").as_deref(),
        Some("/portal/jobs?before=999")
    );
    // A page of another tenant's ids shows nothing of theirs; a cursor that is not an id is
    // refused naming it.
    let theirs_page = fetch(
        &h,
        "GET",
        &format!("/portal/jobs?before={}", theirs[0] + 1),
        Some(&mia),
        &[],
        None,
    )
    .await;
    assert!(
        job_ids(&theirs_page.body)
            .iter()
            .all(|id| mine.contains(id))
    );
    let bad = fetch(&h, "GET", "/portal/jobs?before=abc", Some(&mia), &[], None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("before"), "{}", bad.body);
}

/// A request with the cookie exactly as given (no sign-in on the way).
async fn with_cookie(
    h: &Harness,
    method: &str,
    path: &str,
    id: &str,
) -> axum::http::Response<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, format!("haneul_session={id}"));
    if method == "POST" {
        req = req.header(header::ORIGIN, ORIGIN);
    }
    h.app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn is_signin(r: &axum::http::Response<Body>) -> bool {
    r.status() == StatusCode::SEE_OTHER
        && r.headers().get(header::LOCATION).unwrap() == "/portal/signin"
}

#[tokio::test]
async fn sessions_end_on_sign_out_revocation_idle_and_age() {
    let h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "pa").await;
    let (_, member) = h.user("mia", "member", Some(org), &[pa]).await;

    // Sign-out revokes the session itself: the copied cookie no longer works.
    let id = h.portal_session(&member, HOST).await;
    assert_ne!(id, member);
    assert_eq!(
        with_cookie(&h, "GET", "/portal/jobs", &id).await.status(),
        StatusCode::OK
    );
    let out = with_cookie(&h, "POST", "/portal/signout", &id).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(is_signin(
        &with_cookie(&h, "GET", "/portal/jobs", &id).await
    ));
    // The token as a cookie is no session.
    assert!(is_signin(
        &with_cookie(&h, "GET", "/portal/jobs", &member).await
    ));
    // A live refresh (htmx) of an ended session is told to load the sign-in page as the whole
    // page, never given that page to splice into the jobs table.
    let fragment = h
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/portal/jobs/rows")
                .header(header::HOST, HOST)
                .header(header::COOKIE, format!("haneul_session={id}"))
                .header("hx-request", "true")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(fragment.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        fragment.headers().get("hx-redirect").unwrap(),
        "/portal/signin"
    );
    let body = axum::body::to_bytes(fragment.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(body.is_empty(), "the fragment carries no page");

    // Revoking the token signed in with ends its sessions.
    let t = h
        .ok(
            &member,
            "POST",
            "/v1/tokens",
            Some(json!({"name": "browser"})),
            201,
        )
        .await;
    let secret = t["secret"].as_str().unwrap().to_string();
    let id = h.portal_session(&secret, HOST).await;
    assert_eq!(
        with_cookie(&h, "GET", "/portal/jobs", &id).await.status(),
        StatusCode::OK
    );
    h.ok(
        &member,
        "DELETE",
        &format!("/v1/tokens/{}", t["token"]["id"]),
        None,
        200,
    )
    .await;
    assert!(is_signin(
        &with_cookie(&h, "GET", "/portal/jobs", &id).await
    ));

    // Idle and absolute expiry, and Secure under TLS.
    let idle = h.with_state(|s| {
        let mut p = (*s.sessions).clone();
        p.session_idle = Duration::from_secs(30 * 60);
        p.secure_cookie = true;
        s.sessions = std::sync::Arc::new(p);
    });
    let signin = fetch(
        &idle,
        "POST",
        "/portal/signin",
        None,
        &[("origin", "https://portal.test:8470")],
        Some(&format!("token={member}")),
    )
    .await;
    assert!(
        signin.cookies[0].contains("; Secure"),
        "{:?}",
        signin.cookies
    );
    let id = idle.portal_session(&member, HOST).await;
    assert_eq!(
        with_cookie(&idle, "GET", "/portal/jobs", &id)
            .await
            .status(),
        StatusCode::OK
    );
    // Use keeps a session alive past its idle time; thirty idle minutes end it.
    for _ in 0..3 {
        idle.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(
            with_cookie(&idle, "GET", "/portal/jobs", &id)
                .await
                .status(),
            StatusCode::OK
        );
    }
    idle.clock.advance(Duration::from_secs(30 * 60));
    assert!(is_signin(
        &with_cookie(&idle, "GET", "/portal/jobs", &id).await
    ));
    let old = idle.with_state(|s| {
        let mut p = (*s.sessions).clone();
        p.session_idle = Duration::from_secs(3600);
        p.session_absolute = Duration::from_secs(8 * 3600);
        s.sessions = std::sync::Arc::new(p);
    });
    let id = old.portal_session(&member, HOST).await;
    assert_eq!(
        with_cookie(&old, "GET", "/portal/jobs", &id).await.status(),
        StatusCode::OK
    );
    // However busy, a session ends at its absolute limit.
    for _ in 0..15 {
        old.clock.advance(Duration::from_secs(30 * 60));
        assert_eq!(
            with_cookie(&old, "GET", "/portal/jobs", &id).await.status(),
            StatusCode::OK
        );
    }
    old.clock.advance(Duration::from_secs(30 * 60 - 1));
    assert_eq!(
        with_cookie(&old, "GET", "/portal/jobs", &id).await.status(),
        StatusCode::OK
    );
    old.clock.advance(Duration::from_secs(1));
    assert!(is_signin(
        &with_cookie(&old, "GET", "/portal/jobs", &id).await
    ));
}

/// A person a claim rule left pending, as a first sign-in at `issuer` makes them.
async fn pending_person(h: &Harness, name: &str, org: i64) -> i64 {
    let (u, _) = h
        .store
        .provision_oidc_user(
            &st::Actor::system("oidc"),
            st::NewOidcUser {
                user: st::NewUser {
                    name: name.into(),
                    role: st::Role::Member,
                    org_id: Some(org),
                    projects: Vec::new(),
                    uid: None,
                    gid: None,
                    uid_range: h.state.identity.uid_range,
                },
                issuer: "https://idp.example".into(),
                subject: format!("{name}-sub"),
                email: Some(format!("{name}@uni.example")),
                approved: false,
            },
            h.clock.now_ms(),
        )
        .await
        .unwrap();
    u.id
}

#[tokio::test]
async fn org_admins_approve_their_organisations_pending_people_in_the_portal() {
    let h = Harness::sqlite().await;
    let uni = h.org("uni").await;
    let other = h.org("other").await;
    let (_, ada) = h.user("ada", "org-admin", Some(uni), &[]).await;
    let (_, mia) = h.user("mia", "member", Some(uni), &[]).await;
    let kim = pending_person(&h, "kim", uni).await;
    let bo = pending_person(&h, "bo", other).await;

    // The org admin is offered the page; it lists their organisation's pending people only.
    let home = fetch(&h, "GET", "/portal", Some(&ada), &[], None).await;
    assert!(home.body.contains("id=\"nav-pending\""), "{}", home.body);
    let page = fetch(&h, "GET", "/portal/users/pending", Some(&ada), &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(&format!("id=\"pending-{kim}\"")),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(&format!("id=\"pending-{bo}\"")),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<td>mia</td>"),
        "approved users are not pending"
    );

    // Members neither see the link nor the page, nor may they approve.
    let home = fetch(&h, "GET", "/portal", Some(&mia), &[], None).await;
    assert!(!home.body.contains("id=\"nav-pending\""));
    let page = fetch(&h, "GET", "/portal/users/pending", Some(&mia), &[], None).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let refused = post(&h, &format!("/portal/users/{kim}/approve"), Some(&mia), "").await;
    assert!(refused.status.is_client_error(), "{}", refused.status);

    // A form from another site is refused (the portal's Origin check), and nothing changes.
    let forged = fetch(
        &h,
        "POST",
        &format!("/portal/users/{kim}/approve"),
        Some(&ada),
        &[("origin", "http://evil.example")],
        Some(""),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let link = h.store.oidc_link_of(kim).await.unwrap().unwrap();
    assert!(link.approved_at.is_none());

    // Another organisation's person is not there to approve.
    let theirs = post(&h, &format!("/portal/users/{bo}/approve"), Some(&ada), "").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.body);

    // Approving: POST, redirect back to the list, which no longer shows Kim.
    let done = post(&h, &format!("/portal/users/{kim}/approve"), Some(&ada), "").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location, "/portal/users/pending");
    let link = h.store.oidc_link_of(kim).await.unwrap().unwrap();
    assert_eq!(link.approved_by.as_deref(), Some("ada"));
    let page = fetch(&h, "GET", "/portal/users/pending", Some(&ada), &[], None).await;
    assert!(!page.body.contains(&format!("id=\"pending-{kim}\"")));
    assert!(
        page.body.contains("No one waits for approval."),
        "{}",
        page.body
    );
}
