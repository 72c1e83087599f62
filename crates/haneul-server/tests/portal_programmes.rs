//! The portal's programme pages over the real router and a real SQLite store: a centre admin
//! creates, closes and reopens a call from the form; organisations' admins apply for their
//! projects; nobody sees another organisation's applications; the operator scores and awards
//! the call and the outcome is shown; the award then appears on the member's home page and,
//! after a job ran, in the monthly statement and its CSV download. Bad fields are named,
//! cross-site posts refused, and the pages render in English and Korean.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::Harness;
use haneul_model::GpuModel;
use haneul_server::clock::Clock;
use haneul_store as st;
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt;

const HOST: &str = "calls.test:8470";
const SAME_SITE: &str = "http://calls.test:8470";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A browser's request to the portal: signed in as `session` (a token), in `lang`, and a
/// POST of `form` with `origin` as its Origin header when a form is given.
async fn browse(
    h: &Harness,
    path: &str,
    session: &str,
    lang: &str,
    form: Option<&str>,
    origin: &str,
) -> Answer {
    // Tests name sessions by their token; the browser's cookie is the session it gets.
    let id = h.portal_session(session, HOST).await;
    let builder = Request::builder()
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::ACCEPT_LANGUAGE, lang)
        .header(header::COOKIE, format!("haneul_session={id}"));
    let request = if let Some(f) = form {
        // An empty `origin` sends none, as no browser would on a POST.
        let builder = if origin.is_empty() {
            builder
        } else {
            builder.header(header::ORIGIN, origin)
        };
        builder
            .method("POST")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(f.to_string()))
    } else {
        builder.method("GET").body(Body::empty())
    };
    let response = h.app.clone().oneshot(request.unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn page(h: &Harness, path: &str, session: &str) -> Answer {
    browse(h, path, session, "en", None, SAME_SITE).await
}

async fn submit(h: &Harness, path: &str, session: &str, form: &str) -> Answer {
    browse(h, path, session, "en", Some(form), SAME_SITE).await
}

/// The application form of `call`, posted by `who`.
async fn apply_as(h: &Harness, call: i64, who: &str, form: &str) -> Answer {
    submit(h, &format!("/portal/calls/{call}/applications"), who, form).await
}

/// The scoring form of application `app` of `call`, posted by `who`.
async fn score_as(h: &Harness, call: i64, app: i64, who: &str, form: &str) -> Answer {
    let path = format!("/portal/calls/{call}/applications/{app}/scores");
    submit(h, &path, who, form).await
}

/// The id at the end of a redirect such as `/portal/calls/3` or `/portal/calls/3#app-7`.
fn id_after(location: &str, prefix: &str) -> i64 {
    let rest = location
        .rsplit_once(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {location:?}"))
        .1;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no id after {prefix} in {location:?}"))
}

/// The table row (`<tr id="...">` up to its `</tr>`) with this id, or None.
fn row<'a>(body: &'a str, id: &str) -> Option<&'a str> {
    let start = body.find(&format!("<tr id=\"{id}\""))?;
    let rest = &body[start..];
    Some(&rest[..rest.find("</tr>")?])
}

const CALL_FORM: &str = "programme=national-ai&name=2027-spring&gpu_model=H200&capacity_gpus=8\
    &t1_name=small&t1_min=1&t1_max=4&t1_days=30&t1_cap=4&t1_region=KR\
    &t2_name=server&t2_min=8&t2_max=8&t2_days=60&t2_whole=on&t2_server=8";

fn application(project: i64, gpus: i64, plan: &str) -> String {
    format!("project={project}&track=small&gpus={gpus}&days=10&region=&plan={plan}")
}

/// Runs one job of `project` on `node` to its end as the agent reports it, so the ledger
/// charges it.
async fn run_job(h: &mut Harness, member: &str, agent: &str, node: i64, project: i64) {
    let job = h.submit(member, project, 1).await;
    h.step().await;
    let reports = format!("/v1/agent/nodes/{node}/reports");
    h.ok(
        agent,
        "POST",
        &reports,
        Some(json!({"job": job, "fence": 1, "task": 0, "exit_code": null})),
        200,
    )
    .await;
    h.clock.advance(Duration::from_millis(25));
    h.ok(
        agent,
        "POST",
        &reports,
        Some(json!({"job": job, "fence": 1, "task": 0, "exit_code": 0})),
        200,
    )
    .await;
    h.step().await;
    assert_eq!(h.job_state(job).await, "succeeded");
}

#[tokio::test]
async fn a_call_from_creation_to_award_and_into_the_statement() {
    let mut h = Harness::sqlite().await;
    let admin = h.admin.clone();
    let org_a = h.org("org-a").await;
    let org_b = h.org("org-b").await;
    let pa = h.project(org_a, "alpha-proj").await;
    let pb = h.project(org_b, "beta-proj").await;
    let (_, pi) = h.user("pi-a", "org-admin", Some(org_a), &[]).await;
    let (_, mia) = h.user("mia", "member", Some(org_a), &[pa]).await;
    let (_, pi_b) = h.user("pi-b", "org-admin", Some(org_b), &[]).await;
    let (_, auditor) = h.user("aud", "auditor", None, &[]).await;
    let (_, agent) = h.user("agent", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-node-1").await;

    // The operator creates the call from the form; it opens at once, and can be closed and
    // reopened from the list.
    let created = submit(&h, "/portal/calls", &admin, CALL_FORM).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let call = id_after(created.location(), "/portal/calls/");
    let api_call = h
        .ok(&admin, "GET", &format!("/v1/calls/{call}"), None, 200)
        .await;
    assert_eq!(api_call["tracks"].as_array().unwrap().len(), 2);
    assert_eq!(api_call["tracks"][0]["per_org_cap_gpus"], 4);
    assert_eq!(api_call["tracks"][1]["whole_server"], true);
    let list = page(&h, "/portal/calls", &admin).await;
    let r = row(&list.body, &format!("call-{call}")).expect("the call is listed");
    assert!(r.contains("data-state=\"open\"") && r.contains(&format!("id=\"close-{call}\"")));
    // Closing asks to be confirmed with a reason, and does nothing until it is.
    let asked = submit(
        &h,
        &format!("/portal/calls/{call}/state"),
        &admin,
        "state=closed",
    )
    .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(
        asked.body.contains("id=\"confirm-form\"")
            && asked.body.contains("name=\"state\" value=\"closed\"")
    );
    assert!(!asked.body.contains("id=\"reason-error\""));
    let blank = submit(
        &h,
        &format!("/portal/calls/{call}/state"),
        &admin,
        "state=closed&confirmed=1&reason=+",
    )
    .await;
    assert_eq!(blank.status, StatusCode::OK);
    assert!(blank.body.contains("id=\"reason-error\""), "{}", blank.body);
    let still = h
        .ok(&admin, "GET", &format!("/v1/calls/{call}"), None, 200)
        .await;
    assert_eq!(still["state"], "open");
    // Nobody else gets as far as the confirmation.
    let theirs = submit(
        &h,
        &format!("/portal/calls/{call}/state"),
        &pi,
        "state=closed",
    )
    .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let closed = submit(
        &h,
        &format!("/portal/calls/{call}/state"),
        &admin,
        "state=closed&confirmed=1&reason=panel+is+full",
    )
    .await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER);
    let head = h
        .ok(&admin, "GET", "/v1/audit?after=0&limit=10000", None, 200)
        .await;
    let last = head.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("\"reason\":\"panel is full\""),
        "{last}"
    );
    let list = page(&h, "/portal/calls", &admin).await;
    let r = row(&list.body, &format!("call-{call}")).unwrap();
    assert!(r.contains("data-state=\"closed\"") && r.contains(&format!("id=\"open-{call}\"")));
    // A closed call takes no application, and the form says why.
    let early = apply_as(&h, call, &pi, &application(pa, 2, "early")).await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST, "{}", early.body);
    assert!(early.body.contains("<b>call</b>") && early.body.contains("closed"));
    // Closed calls are not offered to those who have not applied.
    assert!(
        row(
            &page(&h, "/portal/calls", &mia).await.body,
            &format!("call-{call}")
        )
        .is_none()
    );
    submit(
        &h,
        &format!("/portal/calls/{call}/state"),
        &admin,
        "state=open",
    )
    .await;

    // Members see the open call and are told who applies; organisation admins get the form.
    let member_list = page(&h, "/portal/calls", &mia).await;
    assert!(row(&member_list.body, &format!("call-{call}")).is_some());
    assert!(!member_list.body.contains("id=\"call-form\""));
    let member_view = page(&h, &format!("/portal/calls/{call}"), &mia).await;
    assert_eq!(member_view.status, StatusCode::OK);
    assert!(member_view.body.contains("id=\"who-applies\""));
    assert!(!member_view.body.contains("id=\"apply-form\""));
    let pi_view = page(&h, &format!("/portal/calls/{call}"), &pi).await;
    assert!(pi_view.body.contains("id=\"apply-form\""));
    assert!(pi_view.body.contains("alpha-proj") && !pi_view.body.contains("beta-proj"));

    let mut apps = Vec::new();
    for (who, project, gpus, plan) in [
        (&pi, pa, 2, "a+Korean+speech+model"),
        (&pi_b, pb, 4, "beta-secret-plan"),
    ] {
        let applied = apply_as(&h, call, who, &application(project, gpus, plan)).await;
        assert_eq!(applied.status, StatusCode::SEE_OTHER, "{}", applied.body);
        apps.push(id_after(applied.location(), "#app-"));
    }
    let (app_a, app_b) = (apps[0], apps[1]);

    // Each tenant sees its own application only, with its state and without scores.
    for (who, mine, theirs, secret) in [
        (&mia, app_a, app_b, "beta-secret-plan"),
        (&pi, app_a, app_b, "beta-secret-plan"),
        (&pi_b, app_b, app_a, "Korean speech"),
    ] {
        let view = page(&h, &format!("/portal/calls/{call}"), who).await;
        let own = row(&view.body, &format!("app-{mine}")).expect("own application");
        assert!(own.contains("data-state=\"submitted\""), "{own}");
        assert!(row(&view.body, &format!("app-{theirs}")).is_none());
        assert!(!view.body.contains(secret), "{}", view.body);
        assert!(!view.body.contains("Mean score") && !view.body.contains("score-form"));
    }
    // Nor may they score: the API's refusal is the portal's "not allowed" page.
    let scored = score_as(&h, call, app_a, &pi, "reviewer=me&score=10").await;
    assert_eq!(scored.status, StatusCode::FORBIDDEN, "{}", scored.body);

    // The operator sees both, scores one (the other stays unscored), and awards.
    let op_view = page(&h, &format!("/portal/calls/{call}"), &admin).await;
    assert!(row(&op_view.body, &format!("app-{app_a}")).is_some());
    assert!(row(&op_view.body, &format!("app-{app_b}")).is_some());
    assert!(op_view.body.contains(&format!("id=\"score-form-{app_a}\"")));
    for (reviewer, score, comment) in [("rev-1", 9, "strong"), ("rev-2", 8, "needs+a+data+plan")] {
        let s = score_as(
            &h,
            call,
            app_a,
            &admin,
            &format!("reviewer={reviewer}&score={score}&comment={comment}"),
        )
        .await;
        assert_eq!(s.status, StatusCode::SEE_OTHER, "{}", s.body);
    }
    let op_view = page(&h, &format!("/portal/calls/{call}"), &admin).await;
    let scored_row = row(&op_view.body, &format!("app-{app_a}")).unwrap();
    assert!(
        scored_row.contains("rev-1: 9, rev-2: 8") && scored_row.contains("8.50"),
        "{scored_row}"
    );
    // What the reviewers wrote is shown with their names, to the operator and the auditor.
    let comments = format!("id=\"comments-{app_a}\"");
    assert!(op_view.body.contains(&comments), "{}", op_view.body);
    for said in ["<b>rev-1</b>: strong", "<b>rev-2</b>: needs a data plan"] {
        assert!(op_view.body.contains(said), "{said} in {}", op_view.body);
    }
    // Auditors read the scores but get no forms.
    let audit_view = page(&h, &format!("/portal/calls/{call}"), &auditor).await;
    assert!(row(&audit_view.body, &format!("app-{app_b}")).is_some());
    assert!(audit_view.body.contains("8.50"));
    assert!(audit_view.body.contains("needs a data plan"));
    // The applicants do not see who wrote what.
    let applicant_view = page(&h, &format!("/portal/calls/{call}"), &pi).await;
    assert!(
        !applicant_view.body.contains("needs a data plan")
            && !applicant_view.body.contains(&comments)
    );
    assert!(!audit_view.body.contains("score-form") && !audit_view.body.contains("award-call"));

    // Awarding is confirmed first; the confirmation alone awards nothing.
    let asked = submit(&h, &format!("/portal/calls/{call}/award"), &admin, "").await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("id=\"confirm-form\"") && !asked.body.contains("id=\"outcome\""));
    let still = h
        .ok(&admin, "GET", &format!("/v1/calls/{call}"), None, 200)
        .await;
    assert_ne!(still["state"], "awarded");
    let awarded = submit(
        &h,
        &format!("/portal/calls/{call}/award"),
        &admin,
        "confirmed=1&reason=panel+of+2027-03-02",
    )
    .await;
    assert_eq!(awarded.status, StatusCode::OK, "{}", awarded.body);
    let body = &awarded.body;
    assert!(body.contains("id=\"outcome\""), "{body}");
    let award = h.ok(&mia, "GET", "/v1/balances", None, 200).await[0]["award"]
        .as_i64()
        .unwrap();
    let won = row(body, &format!("awarded-{award}")).expect("the award in the outcome");
    assert!(
        won.contains("alpha-proj") && won.contains(&format!("#{app_a}")),
        "{won}"
    );
    assert!(won.contains(&format!("<td>{}</td>", 2 * 10 * 24)), "{won}");
    let lost = row(body, &format!("declined-{app_b}")).expect("the declined application");
    assert!(
        lost.contains("beta-proj") && lost.contains("no reviewer scored it"),
        "{lost}"
    );
    assert!(body.contains("data-state=\"awarded\"") && !body.contains("id=\"award-call\""));
    // Awarded once only: the call is shown awarded and offers no second award.
    let again = submit(
        &h,
        &format!("/portal/calls/{call}/award"),
        &admin,
        "confirmed=1&reason=again",
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("id=\"award-error\""), "{}", again.body);

    // The applicant's side: the state, and the award on the member's home page.
    let after = page(&h, &format!("/portal/calls/{call}"), &mia).await;
    assert!(
        row(&after.body, &format!("app-{app_a}"))
            .unwrap()
            .contains("data-state=\"awarded\"")
    );
    let list = page(&h, "/portal/calls", &mia).await;
    let r = row(&list.body, &format!("call-{call}")).expect("an applied-to call stays listed");
    assert!(r.contains(&format!("#{app_a} Awarded")), "{r}");
    let home = page(&h, "/portal", &mia).await;
    let balance = row(&home.body, &format!("award-{award}")).expect("the award on the home page");
    assert!(
        balance.contains("<td class=\"granted\">480.0</td>"),
        "{balance}"
    );
    assert!(
        home.body.contains("href=\"/portal/calls\"")
            && home.body.contains("href=\"/portal/statements\"")
    );

    // Usage, then the month's statement: the member's project only, as the API totals it.
    let h200 = GpuModel::new("H200").unwrap();
    h.store
        .set_gpu_weight(
            &st::Actor::system("test"),
            &h200,
            1_000_000_000,
            h.clock.now_ms(),
        )
        .await
        .unwrap();
    run_job(&mut h, &mia, &agent, node, pa).await;
    let stmt = page(&h, "/portal/statements", &mia).await;
    assert_eq!(stmt.status, StatusCode::OK, "{}", stmt.body);
    let api_stmt = h
        .ok(
            &mia,
            "GET",
            &format!("/v1/statements?month={}", month_now()),
            None,
            200,
        )
        .await;
    assert_eq!(api_stmt["lines"].as_array().unwrap().len(), 1, "{api_stmt}");
    assert!(stmt.body.contains(&format!("value=\"{}\"", month_now())));
    assert!(stmt.body.contains(&format!("data-project=\"{pa}\"")));
    assert!(!stmt.body.contains("beta-proj"));
    let charged = api_stmt["charged_ms"].as_i64().unwrap() as f64 / 3_600_000.0;
    assert!(charged > 1.0, "the job was charged: {api_stmt}");
    let total = row(&stmt.body, "statement-total").expect("a totals row");
    assert!(
        total.contains(&format!("<td class=\"charged\">{charged:.3}</td>")),
        "{charged}: {total}"
    );
    assert!(stmt.body.contains("id=\"ledger-rows\">1<"), "{}", stmt.body);
    // Another organisation's admin sees none of it.
    let other = page(&h, "/portal/statements", &pi_b).await;
    assert!(!other.body.contains("data-project="), "{}", other.body);

    // The CSV download: the API's columns, named by month and project.
    let csv = page(
        &h,
        &format!("/portal/statements.csv?project={pa}&month={}", month_now()),
        &mia,
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers[header::CONTENT_DISPOSITION],
        format!(
            "attachment; filename=\"haneul-statement-{}-project-{pa}.csv\"",
            month_now()
        )
    );
    let api_csv = api_text(
        &h,
        &mia,
        &format!(
            "/v1/statements?month={}&project={pa}&format=csv",
            month_now()
        ),
    )
    .await;
    assert_eq!(csv.body, api_csv);
    assert!(csv.body.starts_with("month,org,project,gpu_model,"));
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
}

/// This month in UTC, as `date` has it: the portal's default month, found independently.
fn month_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m"])
        .output()
        .expect("run date (coreutils)");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn api_text(h: &Harness, token: &str, path: &str) -> String {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// One organisation with a project, its admin and a member of the project: (harness,
/// project, admin's token, member's token).
async fn one_tenant() -> (Harness, i64, String, String) {
    let h = Harness::sqlite().await;
    let org = h.org("org-a").await;
    let pa = h.project(org, "alpha-proj").await;
    let (_, pi) = h.user("pi-a", "org-admin", Some(org), &[]).await;
    let (_, mia) = h.user("mia", "member", Some(org), &[pa]).await;
    (h, pa, pi, mia)
}

#[tokio::test]
async fn bad_fields_are_named_and_cross_site_posts_refused() {
    let (h, pa, pi, mia) = one_tenant().await;
    let admin = h.admin.clone();

    // The form's own check, then the API's, each naming its field and keeping what was typed.
    for (from, to, says, kept) in [
        (
            "capacity_gpus=8",
            "capacity_gpus=lots",
            "<b>capacity_gpus</b>: `lots` is not a whole number",
            "value=\"lots\" required aria-invalid=\"true\"",
        ),
        (
            "t2_server=8",
            "t2_server=16",
            "<b>tracks[1].server_gpus</b>: a whole-server track",
            "value=\"16\" aria-invalid=\"true\"",
        ),
        (
            "capacity_gpus=8",
            "capacity_gpus=0",
            "<b>capacity_gpus</b>: must be positive",
            "value=\"0\" required aria-invalid=\"true\"",
        ),
    ] {
        let bad = submit(&h, "/portal/calls", &admin, &CALL_FORM.replace(from, to)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{to}");
        assert!(bad.body.contains(says), "{to}: {}", bad.body);
        assert!(bad.body.contains(kept), "{to}: {}", bad.body);
        assert!(bad.body.contains("value=\"2027-spring\""), "{to}");
    }

    // From another site, or with no Origin: refused before anything is made.
    for origin in ["http://evil.example", ""] {
        let cross = browse(&h, "/portal/calls", &admin, "en", Some(CALL_FORM), origin).await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{origin}");
    }
    // Neither the refused forms nor the cross-site posts made a call.
    assert!(
        h.ok(&admin, "GET", "/v1/calls", None, 200)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Only centre admins create calls; to others the list has no form, and a post is refused.
    let refused = submit(&h, "/portal/calls", &pi, CALL_FORM).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let call = id_after(
        submit(&h, "/portal/calls", &admin, CALL_FORM)
            .await
            .location(),
        "/portal/calls/",
    );
    for (form, field, says) in [
        (application(pa, 6, "x"), "gpus", "takes 1 to 4 GPUs"),
        (
            application(pa, 2, "x").replace("days=10", "days=ten"),
            "days",
            "not a whole number",
        ),
        (
            application(pa, 2, "x").replace("days=10", "days=31"),
            "days",
            "1 to 30 days",
        ),
        (application(pa, 2, ""), "plan", "describe the work"),
        (
            application(pa, 2, "x").replace("track=small", "track=huge"),
            "track",
            "small, server",
        ),
        (application(0, 2, "x"), "project", "choose a project"),
    ] {
        let a = apply_as(&h, call, &pi, &form).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{field}");
        assert!(
            a.body.contains(&format!("<b>{field}</b>")),
            "{field}: {}",
            a.body
        );
        assert!(a.body.contains(says), "{field}: {}", a.body);
    }
    // A member posting the form anyway gets the API's refusal at the project field.
    let m = apply_as(&h, call, &mia, &application(pa, 2, "x")).await;
    assert_eq!(m.status, StatusCode::BAD_REQUEST);
    assert!(
        m.body.contains("<b>project</b>") && m.body.contains("or a centre admin applies"),
        "{}",
        m.body
    );

    // Scores: not a number, out of range.
    let app = id_after(
        apply_as(&h, call, &pi, &application(pa, 2, "x"))
            .await
            .location(),
        "#app-",
    );
    for (score, says) in [("nine", "not a whole number"), ("11", "must be 0 to 10")] {
        let s = score_as(&h, call, app, &admin, &format!("score={score}")).await;
        assert_eq!(s.status, StatusCode::BAD_REQUEST);
        assert!(
            s.body.contains(&format!("id=\"score-error-{app}\"")),
            "{}",
            s.body
        );
        assert!(
            s.body.contains("<b>score</b>") && s.body.contains(says),
            "{}",
            s.body
        );
    }

    // Statements: a month the API refuses, one that is not a month, a project that is no number.
    for (query, field) in [
        ("month=2026-13", "month"),
        ("month=december", "month"),
        ("project=alpha", "project"),
    ] {
        let s = page(&h, &format!("/portal/statements?{query}"), &mia).await;
        assert_eq!(s.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            s.body.contains(&format!("<b>{field}</b>")),
            "{query}: {}",
            s.body
        );
        let csv = page(&h, &format!("/portal/statements.csv?{query}"), &mia).await;
        assert_eq!(csv.status, StatusCode::BAD_REQUEST, "{query}");
    }

    // Not there: an unknown call, or an id that is not one.
    for path in ["/portal/calls/999", "/portal/calls/abc"] {
        let p = page(&h, path, &mia).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_pages_render_in_english_and_korean() {
    let (h, _, _, mia) = one_tenant().await;
    let admin = h.admin.clone();
    let call = id_after(
        submit(&h, "/portal/calls", &admin, CALL_FORM)
            .await
            .location(),
        "/portal/calls/",
    );
    for (lang, words) in [
        (
            "en",
            [
                "Calls for GPU time",
                "Tracks",
                "Monthly statement",
                "Open a new call",
            ],
        ),
        (
            "ko",
            ["GPU 자원 공모", "트랙", "월별 정산서", "새 공모 열기"],
        ),
    ] {
        let list = browse(&h, "/portal/calls", &admin, lang, None, SAME_SITE).await;
        let one = browse(
            &h,
            &format!("/portal/calls/{call}"),
            &mia,
            lang,
            None,
            SAME_SITE,
        )
        .await;
        let stmt = browse(&h, "/portal/statements", &mia, lang, None, SAME_SITE).await;
        for p in [&list, &one, &stmt] {
            assert_eq!(p.status, StatusCode::OK, "{lang}: {}", p.body);
            assert!(p.body.contains(&format!("<html lang=\"{lang}\">")));
        }
        assert!(
            list.body.contains(words[0]) && list.body.contains(words[3]),
            "{lang}"
        );
        assert!(one.body.contains(words[1]), "{lang}");
        assert!(stmt.body.contains(words[2]), "{lang}");
    }
    // Every control of the forms has its label.
    let list = page(&h, "/portal/calls", &admin).await;
    let one = page(&h, &format!("/portal/calls/{call}"), &admin).await;
    for body in [&list.body, &one.body] {
        for id in ids_of_controls(body) {
            assert!(
                body.contains(&format!("<label for=\"{id}\"")),
                "no label for #{id}"
            );
        }
    }
}

/// The ids of the visible inputs, selects and textareas in a page.
fn ids_of_controls(body: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for tag in ["<input ", "<select ", "<textarea "] {
        for (at, _) in body.match_indices(tag) {
            let el = &body[at..at + body[at..].find('>').unwrap()];
            if el.contains("type=\"hidden\"") {
                continue;
            }
            let id = el
                .split("id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("a control with no id: {el}"));
            ids.push(id.to_string());
        }
    }
    assert!(!ids.is_empty());
    ids
}
