//! Awards, accounting and compliance through the HTTP API and the controller: a whole call
//! (applications, scores, awards), jobs charged to the right award, an award running out and
//! jobs held with the reason, a refund after a node fault, statements that equal the ledger,
//! screening refusals in the audit log, and the ledger under concurrent attempts.

mod common;

use common::Harness;
use haneul_model::GpuModel;
use haneul_server::accounting::{self, AccountingPolicy};
use haneul_server::clock::Clock;
use haneul_server::controller::{Controller, ControllerConfig, Signals};
use haneul_server::metrics::Metrics;
use haneul_server::{AppState, app};
use haneul_store as st;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

async fn report(h: &Harness, agent: &str, node: i64, job: i64, fence: i64, exit: Option<i64>) {
    h.ok(
        agent,
        "POST",
        &format!("/v1/agent/nodes/{node}/reports"),
        Some(json!({"job": job, "fence": fence, "task": 0, "exit_code": exit})),
        200,
    )
    .await;
}

async fn job(h: &Harness, id: i64) -> Value {
    h.ok(&h.admin, "GET", &format!("/v1/jobs/{id}"), None, 200)
        .await["job"]
        .clone()
}

async fn ledger(h: &Harness) -> Vec<Value> {
    h.ok(&h.admin, "GET", "/v1/ledger", None, 200)
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap()
}

async fn org(h: &Harness, body: Value) -> i64 {
    n(&h.ok(&h.admin, "POST", "/v1/orgs", Some(body), 201).await["id"])
}

async fn whole_call(mut h: Harness) {
    let kaist = org(&h, json!({"name": "kaist", "country": "KR"})).await;
    let snu = org(&h, json!({"name": "snu", "country": "KR"})).await;
    let p1 = h.project(kaist, "llm").await;
    let p2 = h.project(snu, "vision").await;
    let p3 = h.project(kaist, "speech").await;
    let p5 = h.project(snu, "late").await;
    let (_, u1) = h.user("kim", "member", Some(kaist), &[p1]).await;
    let (_, u2) = h.user("lee", "member", Some(snu), &[p2]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;

    // A call with a small track capped per organisation and a whole-server track.
    let call = h
        .ok(
            &h.admin,
            "POST",
            "/v1/calls",
            Some(json!({
                "programme": "national-ai", "name": "2027-spring", "gpu_model": "H200",
                "capacity_gpus": 16,
                "tracks": [
                    {"name": "small", "min_gpus": 1, "max_gpus": 4, "max_days": 90,
                     "per_org_cap_gpus": 4, "region": "KR"},
                    {"name": "server", "min_gpus": 8, "max_gpus": 16, "whole_server": true,
                     "max_days": 60}
                ]
            })),
            201,
        )
        .await;
    let call = n(&call["id"]);
    let apply = |project: i64, track: &str, gpus: i64, days: i64| {
        json!({"project": project, "track": track, "gpus": gpus, "days": days,
               "plan": "pre-train a Korean model"})
    };
    // Bad requests name the field and the rule.
    let (code, v) = h
        .call(
            Some(&h.admin),
            "POST",
            &format!("/v1/calls/{call}/applications"),
            Some(apply(p2, "server", 12, 30)),
        )
        .await;
    assert_eq!(
        (code.as_u16(), v["error"]["field"].as_str()),
        (400, Some("gpus")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multiple of 8")
    );
    let mut apps = Vec::new();
    for (p, track, gpus) in [
        (p1, "small", 4),
        (p2, "server", 8),
        (p3, "small", 2),
        (p5, "small", 1),
    ] {
        let a = h
            .ok(
                &h.admin,
                "POST",
                &format!("/v1/calls/{call}/applications"),
                Some(apply(p, track, gpus, 30)),
                201,
            )
            .await;
        apps.push(n(&a["id"]));
    }
    for (app, scores) in [(apps[0], [8, 8]), (apps[1], [9, 9]), (apps[2], [7, 8])] {
        for (i, score) in scores.into_iter().enumerate() {
            h.ok(
                &h.admin,
                "POST",
                &format!("/v1/applications/{app}/scores"),
                Some(json!({"reviewer": format!("reviewer-{i}"), "score": score})),
                201,
            )
            .await;
        }
    }
    let awarded = h
        .ok(
            &h.admin,
            "POST",
            &format!("/v1/calls/{call}/award"),
            None,
            201,
        )
        .await;
    let awards = awarded["awards"].as_array().unwrap();
    // Ranked by mean score: the server track (9.0) first, then kaist's small request (8.0);
    // kaist's second request (7.5) would pass its organisation's cap of 4 GPUs.
    assert_eq!(
        awards.iter().map(|a| n(&a["project"])).collect::<Vec<_>>(),
        vec![p2, p1]
    );
    assert_eq!(n(&awards[1]["gpu_hours"]), 4 * 30 * 24);
    assert_eq!(n(&awards[1]["gpu_quota"]), 4);
    let declined: Vec<(i64, String)> = awarded["declined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                n(&d["application"]),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(declined.len(), 2, "{declined:?}");
    assert!(
        declined
            .iter()
            .any(|(a, r)| *a == apps[2] && r.contains("cap of 4"))
    );
    assert!(
        declined
            .iter()
            .any(|(a, r)| *a == apps[3] && r.contains("no reviewer"))
    );
    let award1 = n(&awards[1]["id"]);
    let award2 = n(&awards[0]["id"]);
    let (code, _) = h
        .call(
            Some(&h.admin),
            "POST",
            &format!("/v1/calls/{call}/award"),
            None,
        )
        .await;
    assert_eq!(code.as_u16(), 409);

    // A job of p1 is charged to p1's award at the H200 class weight (1.3 by default).
    let j1 = h.submit(&u1, p1, 2).await;
    h.step().await;
    report(&h, &agent, node, j1, 1, None).await;
    h.clock.advance(Duration::from_millis(20));
    report(&h, &agent, node, j1, 1, Some(0)).await;
    h.step().await;
    let rows = ledger(&h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0]["kind"].as_str(),
            n(&rows[0]["award"]),
            n(&rows[0]["weight_milli"])
        ),
        (Some("charge"), award1, 1300)
    );
    assert_eq!(n(&rows[0]["gpu_ms"]), 2 * 20);
    assert_eq!(
        n(&rows[0]["charged_ms"]),
        n(&rows[0]["gpu_ms"]) * 1300 / 1000
    );

    // The award runs out: take most of it back and make H200 time very dear.
    h.ok(
        &h.admin,
        "POST",
        &format!("/v1/awards/{award1}/adjust"),
        Some(json!({"gpu_hours": -(4 * 30 * 24 - 1), "reason": "scaled down"})),
        201,
    )
    .await;
    h.store
        .set_gpu_weight(
            &st::Actor::system("test"),
            &GpuModel::new("H200").unwrap(),
            1_000_000_000,
            h.clock.now_ms(),
        )
        .await
        .unwrap();
    let j2 = h.submit(&u1, p1, 1).await;
    h.step().await;
    report(&h, &agent, node, j2, 1, None).await;
    h.clock.advance(Duration::from_millis(10));
    report(&h, &agent, node, j2, 1, Some(0)).await;
    h.step().await;
    let usage = h.ok(&u1, "GET", "/v1/balances", None, 200).await;
    let mine = usage.as_array().unwrap();
    assert_eq!(
        mine.len(),
        1,
        "a member sees only its projects' awards: {usage}"
    );
    assert_eq!(mine[0]["state"], "spent", "{usage}");
    assert!(mine[0]["gpu_hours_left"].as_f64().unwrap() <= 0.0);
    let held = h.submit(&u1, p1, 1).await;
    h.step().await;
    h.step().await;
    let j = job(&h, held).await;
    assert_eq!(j["state"], "queued");
    let reason = j["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("award {award1}"))
            && reason.contains("spent")
            && reason.contains("haneul usage"),
        "{reason}"
    );
    // Operators get notices; the hold is on record.
    let notices = h.ok(&h.admin, "GET", "/v1/notices", None, 200).await;
    assert!(
        notices
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "award.spent" && x["award"] == award1),
        "{notices}"
    );
    let audit = h.ok(&h.admin, "GET", "/v1/audit", None, 200).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "call.award",
        "application.score",
        "award.take-back",
        "project.hold",
        "notice.award.spent",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // A top-up releases the held job, which then runs.
    h.ok(
        &h.admin,
        "PUT",
        "/v1/gpu-weights",
        Some(json!({"gpu_model": "H200", "weight": 1.3})),
        200,
    )
    .await;
    let used = mine[0]["gpu_hours_used"].as_f64().unwrap().ceil() as i64;
    h.ok(
        &h.admin,
        "POST",
        &format!("/v1/awards/{award1}/adjust"),
        Some(json!({"gpu_hours": used + 10, "reason": "second phase"})),
        201,
    )
    .await;
    h.step().await;
    h.step().await;
    assert_eq!(job(&h, held).await["state"], "running");
    assert!(
        actions.len()
            < h.ok(&h.admin, "GET", "/v1/audit", None, 200)
                .await
                .as_array()
                .unwrap()
                .len()
    );

    // An unverified organisation's jobs are held until a centre admin verifies it.
    let newco = org(
        &h,
        json!({"name": "newco", "country": "KR", "verification": "pending"}),
    )
    .await;
    let p6 = h.project(newco, "pilot").await;
    let (_, u6) = h.user("park", "member", Some(newco), &[p6]).await;
    let j6 = h.submit(&u6, p6, 1).await;
    h.step().await;
    let j = job(&h, j6).await;
    assert_eq!(j["state"], "queued");
    assert!(
        j["reason"].as_str().unwrap().contains("haneul org verify"),
        "{j}"
    );
    h.ok(
        &h.admin,
        "POST",
        &format!("/v1/orgs/{newco}/verify"),
        Some(json!({})),
        200,
    )
    .await;
    h.step().await;
    h.step().await;
    assert_eq!(job(&h, j6).await["state"], "running");

    // p2's job is lost with its node: charged, then refunded in full.
    let j3 = h.submit(&u2, p2, 4).await;
    h.step().await;
    report(&h, &agent, node, j3, 1, None).await;
    h.clock.advance(Duration::from_millis(10));
    let lost = h
        .store
        .mark_lost_nodes(h.clock.now_ms() + 1, h.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(lost, vec![node]);
    h.step().await;
    let rows = ledger(&h).await;
    let of_j3: Vec<&Value> = rows.iter().filter(|r| r["project"] == p2).collect();
    assert_eq!(of_j3.len(), 2, "{of_j3:?}");
    assert_eq!(
        (of_j3[0]["kind"].as_str(), of_j3[1]["kind"].as_str()),
        (Some("charge"), Some("refund"))
    );
    assert_eq!(n(&of_j3[0]["charged_ms"]), -n(&of_j3[1]["charged_ms"]));
    assert!(n(&of_j3[0]["charged_ms"]) > 0);
    assert_eq!(n(&of_j3[0]["award"]), award2);
    let b2 = h.ok(&u2, "GET", "/v1/balances", None, 200).await;
    assert_eq!(b2[0]["gpu_hours_used"].as_f64(), Some(0.0), "{b2}");

    // The month's statement equals the ledger, as JSON and as CSV.
    let first = n(&rows[0]["at"]);
    let seoul = haneul_server::calendar::Calendar::default();
    let month = seoul.date(first)[..7].to_string();
    let (from, until) = seoul.month_bounds(&month).unwrap();
    let in_month: Vec<&Value> = rows
        .iter()
        .filter(|r| (from..until).contains(&n(&r["at"])))
        .collect();
    let sum = |kind: &str| -> i64 {
        in_month
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| n(&r["charged_ms"]))
            .sum()
    };
    let s = h
        .ok(
            &h.admin,
            "GET",
            &format!("/v1/statements?month={month}"),
            None,
            200,
        )
        .await;
    assert_eq!(n(&s["charged_ms"]), sum("charge"));
    assert_eq!(n(&s["refunded_ms"]), -sum("refund"));
    assert_eq!(n(&s["ledger_rows"]), in_month.len() as i64);
    let line_sum: f64 = s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["charged_gpu_hours"].as_f64().unwrap())
        .sum();
    assert!((line_sum - sum("charge") as f64 / 3.6e6).abs() < 1e-6);
    // One organisation's statement holds only its own projects.
    let s2 = h
        .ok(
            &u2,
            "GET",
            &format!("/v1/statements?month={month}&org={snu}"),
            None,
            200,
        )
        .await;
    assert!(
        s2["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["org"] == snu),
        "{s2}"
    );
    let (code, _) = h
        .call(
            Some(&u2),
            "GET",
            &format!("/v1/statements?month={month}&org={kaist}"),
            None,
        )
        .await;
    assert_eq!(code.as_u16(), 404);
    let csv = raw_get(&h, &format!("/v1/statements?month={month}&format=csv")).await;
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("month,org,project,gpu_model,gpu_hours")
    );
    let csv_sum: f64 = lines
        .map(|l| l.split(',').nth(5).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        (csv_sum - sum("charge") as f64 / 3.6e6).abs() < 1e-3,
        "{csv}"
    );
    let (code, v) = h
        .call(Some(&h.admin), "GET", "/v1/statements?month=2026-13", None)
        .await;
    assert_eq!(
        (code.as_u16(), v["error"]["field"].as_str()),
        (400, Some("month"))
    );

    // Underuse: both awards started moments ago, too soon to flag.
    let under = h.ok(&h.admin, "GET", "/v1/underuse", None, 200).await;
    assert!(
        under
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["flagged"] == false),
        "{under}"
    );
    assert!(
        h.ok(&h.admin, "GET", "/v1/audit/verify", None, 200).await["entries"].as_i64() > Some(0)
    );
}

async fn raw_get(h: &Harness, path: &str) -> String {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {}", h.admin))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn screening(mut h: Harness) {
    // Owned from a restricted country: refused with the rule named, and on record.
    let (code, v) = h
        .call(
            Some(&h.admin),
            "POST",
            "/v1/orgs",
            Some(json!({"name": "frontco", "country": "KR", "parent_country": "CN"})),
        )
        .await;
    assert_eq!(code.as_u16(), 403, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("restricted-parent-country") && msg.contains("CN"),
        "{msg}"
    );
    let (code, v) = h
        .call(
            Some(&h.admin),
            "POST",
            "/v1/orgs",
            Some(json!({"name": "mo-lab", "country": "MO"})),
        )
        .await;
    assert_eq!(code.as_u16(), 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rule restricted-country")
    );
    let refusals: Vec<Value> = h
        .ok(&h.admin, "GET", "/v1/audit", None, 200)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "org.refuse")
        .cloned()
        .collect();
    assert_eq!(refusals.len(), 2);
    assert_eq!(refusals[0]["target"], "org-name/frontco");
    let detail: Value = serde_json::from_str(refusals[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["rule"], "restricted-parent-country");
    assert_eq!(detail["parent_country"], "CN");
    assert!(
        h.ok(&h.admin, "GET", "/v1/orgs", None, 200)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A denied-party list screens registrations, and jobs of organisations already registered.
    let acme = org(&h, json!({"name": "Acme Robotics", "country": "KR"})).await;
    let p = h.project(acme, "arm").await;
    let (_, u) = h.user("choi", "member", Some(acme), &[p]).await;
    let imported = h
        .ok(
            &h.admin,
            "POST",
            "/v1/denied-parties",
            Some(json!({"csv": "name,country,source\nACME ROBOTICS,KR,\nShadow Labs Ltd.,XX,BIS Entity List\n",
                        "source": "test list"})),
            201,
        )
        .await;
    assert_eq!(imported["imported"], 2);
    let (code, v) = h
        .call(
            Some(&h.admin),
            "POST",
            "/v1/orgs",
            Some(json!({"name": "shadow labs ltd", "country": "KR"})),
        )
        .await;
    assert_eq!(code.as_u16(), 403);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("BIS Entity List"),
        "{v}"
    );
    let j = h.submit(&u, p, 1).await;
    h.step().await;
    let jr = job(&h, j).await;
    assert_eq!(jr["state"], "queued");
    assert!(
        jr["reason"].as_str().unwrap().contains("denied-party"),
        "{jr}"
    );
    let (code, v) = h
        .call(
            Some(&h.admin),
            "POST",
            "/v1/denied-parties",
            Some(json!({"csv": "who,where\nx,y\n"})),
        )
        .await;
    assert_eq!(
        (code.as_u16(), v["error"]["field"].as_str()),
        (400, Some("csv"))
    );
    let (code, v) = h
        .call(
            Some(&h.admin),
            "POST",
            "/v1/orgs",
            Some(json!({"name": "x", "country": "KR", "parent_country": "korea"})),
        )
        .await;
    assert_eq!(
        (code.as_u16(), v["error"]["field"].as_str()),
        (400, Some("parent_country"))
    );
    // Members may not import lists or verify organisations.
    let (code, _) = h
        .call(
            Some(&u),
            "POST",
            &format!("/v1/orgs/{acme}/verify"),
            Some(json!({})),
        )
        .await;
    assert_eq!(code.as_u16(), 403);
}

/// With a threshold of one operation, the first charged attempt raises the compute notice.
async fn compute_threshold_notice(mut h: Harness) {
    let policy = Arc::new(AccountingPolicy {
        compute_threshold: 1.0,
        ..AccountingPolicy::default()
    });
    let signals = Signals::new();
    let metrics = Arc::new(Metrics::new());
    h.controller = Controller::new(
        h.store.clone(),
        ControllerConfig {
            holder: "test".into(),
            lease_ttl: Duration::from_secs(30),
            tick: Duration::from_millis(10),
            node_timeout: Duration::from_secs(30),
            policy: haneul_sched::Policy::default(),
        },
        signals.clone(),
        metrics.clone(),
    )
    .with_accounting(policy.clone())
    .with_clock(h.clock.shared());
    h.app =
        app(
            AppState::new_with_clock(h.store.clone(), signals, metrics, 5_000, h.clock.shared())
                .with_accounting(policy),
        );
    let o = org(&h, json!({"name": "kisti", "country": "KR"})).await;
    let p = h.project(o, "big").await;
    let (_, u) = h.user("jung", "member", Some(o), &[p]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;
    let j = h.submit(&u, p, 8).await;
    h.step().await;
    report(&h, &agent, node, j, 1, None).await;
    h.clock.advance(Duration::from_millis(5));
    report(&h, &agent, node, j, 1, Some(0)).await;
    // The estimate aggregates all attempts, so the controller runs it at most once a second.
    h.clock.advance(Duration::from_millis(1_050));
    h.step().await;
    let est = h.ok(&u, "GET", "/v1/compute", None, 200).await;
    assert_eq!(est[0]["over_threshold"], true, "{est}");
    // 8 GPUs x at least 5 ms x 989 TFLOP/s x 0.4.
    assert!(est[0]["operations"].as_f64().unwrap() >= 8.0 * 0.005 * 989e12 * 0.4);
    let notices = h.ok(&h.admin, "GET", "/v1/notices", None, 200).await;
    assert!(
        notices
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "compute.threshold" && x["project"] == p),
        "{notices}"
    );
    let audit = h.ok(&h.admin, "GET", "/v1/audit", None, 200).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "notice.compute.threshold")
    );
}

/// Many attempts end at once, some twice over (a duplicate exit report racing the first) and
/// some with their node lost at the same moment: each is charged exactly once, refunds match
/// the node-lost ones, and the ledger's GPU time equals the attempts'.
async fn ledger_under_concurrent_attempts(h: Harness) {
    let store = h.store.clone();
    let admin = st::Actor::system("test");
    let o = store
        .create_org(
            &admin,
            st::NewOrg {
                name: "stress".into(),
                class: "academia".into(),
                country: "KR".into(),
                ..st::NewOrg::default()
            },
            1,
        )
        .await
        .unwrap();
    let p = store
        .create_project(
            &admin,
            st::NewProject {
                org_id: o.id,
                name: "p".into(),
                weight: 1,
                quotas: Default::default(),
                gid_range: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
    let t0 = h.clock.now_ms();
    store
        .create_award(
            &admin,
            st::NewAward {
                project_id: p.id,
                gpu_model: GpuModel::new("H200").unwrap(),
                gpu_hours: 1_000,
                valid_from: 0,
                valid_until: t0 + 86_400_000,
                gpu_quota: 0,
                application_id: None,
            },
            1,
        )
        .await
        .unwrap();
    // Pools are made by operators before nodes register in them.
    store
        .create_pool(
            &admin,
            st::NewPool {
                name: "main".into(),
                owner: None,
                lending: haneul_model::Lending::Open,
            },
            t0,
        )
        .await
        .unwrap();
    let mut nodes = Vec::new();
    for i in 0..4 {
        let nd = store
            .register_node(
                &admin,
                st::NewNode {
                    name: format!("n{i}"),
                    pool: "main".into(),
                    block: "b".into(),
                    gpu_model: GpuModel::new("H200").unwrap(),
                    gpus: 8,
                    gpu_memory_mib: 1,
                    nvlink_domain: 8,
                    cpu_milli: 64_000,
                    memory_mib: 1 << 20,
                    agent_user: None,
                    agent: Default::default(),
                },
                t0,
            )
            .await
            .unwrap();
        nodes.push(nd.id);
    }
    let epoch = store
        .acquire_lease("controller", "stress", 60_000, t0)
        .await
        .unwrap()
        .unwrap();
    let user = store.list_users().await.unwrap();
    let user_id = user.first().map(|u| u.id).unwrap_or(1);
    let jobs = store
        .submit_jobs(
            (0..32)
                .map(|_| {
                    let mut spec = haneul_model::JobSpec::new(
                        haneul_model::ProjectId(p.id as u32),
                        1,
                        haneul_model::GpuRequest::Whole(1),
                    );
                    spec.name = "s".into();
                    (
                        admin.clone(),
                        st::NewJob {
                            user_id,
                            spec,
                            command: vec!["true".into()],
                            container_image: None,
                            batch: None,
                            idempotency: None,
                            array: None,
                            interactive: false,
                        },
                    )
                })
                .collect(),
            t0,
        )
        .await
        .unwrap();
    let starts = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| st::NewAttempt {
            job_id: j.id,
            placement: haneul_sched::Placement {
                tasks: vec![haneul_sched::TaskPlacement {
                    node: haneul_model::NodeId(nodes[i % 4] as u32),
                    gpus: vec![(i / 4) as u32],
                    milli_per_gpu: haneul_model::MilliGpu(1000),
                }],
            },
            gpu_model: Some(GpuModel::new("H200").unwrap()),
            borrowing: false,
        })
        .collect();
    let (attempts, _) = store
        .start_attempts("stress", epoch, starts, t0)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 32);
    for a in &attempts {
        let node = nodes[attempts.iter().position(|x| x.id == a.id).unwrap() % 4];
        store
            .report_task(
                st::TaskReport {
                    node,
                    job: a.job_id,
                    fence: a.fence,
                    task: 0,
                    exit_code: None,
                },
                t0 + 1,
            )
            .await
            .unwrap();
    }
    // Nodes 1 to 3 beat again; node 0 falls silent and is declared lost while its attempts'
    // exits race in.
    store.heartbeats(&nodes[1..], t0 + 500).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, a) in attempts.iter().enumerate() {
        for dup in 0..2 {
            let store = store.clone();
            let (job, fence, node) = (a.job_id, a.fence, nodes[i % 4]);
            tasks.spawn(async move {
                let r = st::TaskReport {
                    node,
                    job,
                    fence,
                    task: 0,
                    exit_code: Some(0),
                };
                let _ = store.report_task(r, t0 + 1_000 + i as i64 * 7 + dup).await;
            });
        }
    }
    {
        let store = store.clone();
        tasks.spawn(async move {
            store.mark_lost_nodes(t0 + 100, t0 + 1_050).await.unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let rows = store.ledger(Some(p.id), i64::MIN, i64::MAX).await.unwrap();
    let mut lost = 0;
    let mut total_gpu_ms = 0;
    for a in &attempts {
        let a = store
            .list_attempts(a.job_id)
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == a.id)
            .unwrap();
        assert!(!a.state.is_live(), "attempt {} still {}", a.id, a.state);
        total_gpu_ms += a.gpu_ms;
        let mine: Vec<&st::LedgerEntry> = rows.iter().filter(|r| r.attempt_id == a.id).collect();
        let charges: Vec<_> = mine
            .iter()
            .filter(|r| r.kind == st::LedgerKind::Charge)
            .collect();
        let refunds: Vec<_> = mine
            .iter()
            .filter(|r| r.kind == st::LedgerKind::Refund)
            .collect();
        assert_eq!(charges.len(), 1, "attempt {}: {mine:?}", a.id);
        assert_eq!(charges[0].gpu_ms, a.gpu_ms);
        assert_eq!(charges[0].charged_ms, a.gpu_ms * 1300 / 1000);
        if a.state == st::AttemptState::NodeLost {
            lost += 1;
            assert_eq!(refunds.len(), 1);
            assert_eq!(refunds[0].charged_ms, -charges[0].charged_ms);
        } else {
            assert!(
                refunds.is_empty(),
                "attempt {} ({}) refunded",
                a.id,
                a.state
            );
        }
    }
    let charged_gpu_ms: i64 = rows
        .iter()
        .filter(|r| r.kind == st::LedgerKind::Charge)
        .map(|r| r.gpu_ms)
        .sum();
    assert_eq!(charged_gpu_ms, total_gpu_ms);
    assert_eq!(rows.len(), 32 + lost);
    let b = &store.award_balances(Some(p.id)).await.unwrap()[0];
    let net: i64 = rows.iter().map(|r| r.charged_ms).sum();
    assert_eq!(b.used_ms, net);
}

/// Award windows given as dates start and end at the centre's midnight (Asia/Seoul by
/// default), and errors answer in the language the request prefers.
async fn award_dates_and_korean_errors(h: Harness) {
    let o = h.org("kaist").await;
    let p = h.project(o, "llm").await;
    let award = |from: Value, until: Value| {
        json!({"project": p, "gpu_model": "H200", "gpu_hours": 100,
               "valid_from": from, "valid_until": until})
    };
    let a = h
        .ok(
            &h.admin,
            "POST",
            "/v1/awards",
            Some(award(json!("2026-12-01"), json!("2027-01-01"))),
            201,
        )
        .await;
    // 2026-12-01T00:00+09:00 is 2026-11-30T15:00Z.
    assert_eq!(n(&a["valid_from"]), 1_796_050_800_000, "{a}");
    assert_eq!(
        n(&a["valid_until"]) - n(&a["valid_from"]),
        31 * 24 * 3_600_000
    );
    let seoul = haneul_server::calendar::Calendar::default();
    assert_eq!(
        seoul.month_bounds("2026-12").unwrap(),
        (n(&a["valid_from"]), n(&a["valid_until"]))
    );
    // Milliseconds still work, unchanged.
    let a = h
        .ok(
            &h.admin,
            "POST",
            "/v1/awards",
            Some(award(json!(1_000), json!(2_000))),
            201,
        )
        .await;
    assert_eq!((n(&a["valid_from"]), n(&a["valid_until"])), (1_000, 2_000));

    let ask =
        |lang: Option<&'static str>, method: &'static str, path: String, body: Option<Value>| {
            let app = h.app.clone();
            let admin = h.admin.clone();
            async move {
                let mut req = axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", format!("Bearer {admin}"))
                    .header("content-type", "application/json");
                if let Some(l) = lang {
                    req = req.header("accept-language", l);
                }
                let req = req
                    .body(axum::body::Body::from(
                        body.map(|b| b.to_string()).unwrap_or_default(),
                    ))
                    .unwrap();
                let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
                let status = resp.status().as_u16();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, serde_json::from_slice::<Value>(&bytes).unwrap())
            }
        };
    let bad = || Some(award(json!("2026-02-30"), json!("2027-01-01")));
    let (status, en) = ask(None, "POST", "/v1/awards".into(), bad()).await;
    assert_eq!(status, 400, "{en}");
    assert_eq!(en["error"]["field"], "valid_from");
    assert_eq!(
        en["error"]["message"],
        "expected Unix milliseconds or a date YYYY-MM-DD, got `2026-02-30`"
    );
    let (status, ko) = ask(
        Some("ko-KR,ko;q=0.9,en;q=0.8"),
        "POST",
        "/v1/awards".into(),
        bad(),
    )
    .await;
    assert_eq!(status, 400, "{ko}");
    assert_eq!(ko["error"]["code"], "bad_request");
    assert_eq!(ko["error"]["field"], "valid_from");
    let msg = ko["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("valid_from: "), "{msg}");
    assert!(msg.contains("올바르지 않습니다"), "{msg}");
    assert!(msg.contains("`2026-02-30`"), "{msg}");

    let (status, ko) = ask(Some("ko"), "GET", "/v1/jobs/987654".into(), None).await;
    assert_eq!(status, 404, "{ko}");
    assert_eq!(ko["error"]["code"], "not_found");
    assert!(
        ko["error"]["message"]
            .as_str()
            .unwrap()
            .contains("찾을 수 없습니다"),
        "{ko}"
    );
    let (_, en) = ask(Some("en, ko;q=0.5"), "GET", "/v1/jobs/987654".into(), None).await;
    assert!(
        en["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{en}"
    );
}

/// The portal page `path` as the person holding `token` sees it.
async fn portal_page(h: &Harness, token: &str, path: &str) -> String {
    use tower::ServiceExt;
    let host = "portal.test:8470";
    let session = h.portal_session(token, host).await;
    let req = axum::http::Request::builder()
        .uri(path)
        .header("host", host)
        .header("cookie", format!("haneul_session={session}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Eight 10-second batches at 3% utilisation ending at `now`, on each of a node's eight GPUs
/// as if job `j` held them all; how many samples the server kept.
async fn idle_samples(h: &Harness, agent: &str, node: i64, j: i64, now: i64) -> i64 {
    let mut accepted = 0;
    for i in 0..8 {
        let samples: Vec<Value> = (0..8)
            .map(|gpu| {
                json!({"job": j, "fence": 1, "task": 0, "gpu": gpu,
                       "uuid": format!("SIM-H200-{gpu}"), "at_ms": now - 70_000 + i * 10_000,
                       "period_ms": 10_000, "util_pct": 3, "mem_mib": 600, "power_w": 100,
                       "temp_c": 35})
            })
            .collect();
        let ack = h
            .ok(
                agent,
                "POST",
                &format!("/v1/agent/nodes/{node}/telemetry"),
                Some(json!({ "samples": samples })),
                200,
            )
            .await;
        accepted += n(&ack["accepted"]);
    }
    accepted
}

/// Issue 21 end to end on a manual clock: a job holds its GPU for thirteen hours at 3%
/// utilisation. The idle policy's notice reaches its owner (the notice API with the job, its
/// owner and when it stops; its efficiency; the portal's home banner and job page) and no one
/// outside the project; the award that held the GPU is flagged as underused by measurement,
/// not by charge; the month's statement shows charged against measured GPU-hours and energy,
/// and a job with no samples as unmeasured.
async fn idle_notice_measured_underuse_and_statement(mut h: Harness) {
    let idle = Arc::new(haneul_server::telemetry::IdlePolicy {
        enabled: true,
        threshold_pct: 5.0,
        window: Duration::from_secs(60),
        grace: Duration::from_secs(120),
        ..Default::default()
    });
    let signals = Signals::new();
    let metrics = Arc::new(Metrics::new());
    h.controller = Controller::new(
        h.store.clone(),
        ControllerConfig {
            holder: "test".into(),
            lease_ttl: Duration::from_secs(30),
            tick: Duration::from_millis(10),
            node_timeout: Duration::from_secs(30),
            policy: haneul_sched::Policy::default(),
        },
        signals.clone(),
        metrics.clone(),
    )
    .with_idle(idle.clone())
    .with_clock(h.clock.shared());
    h.state = AppState::new_with_clock(h.store.clone(), signals, metrics, 5_000, h.clock.shared())
        .with_idle(idle);
    h.app = app(h.state.clone());

    let o = org(&h, json!({"name": "kisti", "country": "KR"})).await;
    let p = h.project(o, "vision").await;
    let q = h.project(o, "speech").await;
    let (owner_id, owner) = h.user("kim", "member", Some(o), &[p]).await;
    let (_, colleague) = h.user("lee", "member", Some(o), &[p]).await;
    let (_, outsider) = h.user("park", "member", Some(o), &[q]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;
    let day = 86_400_000;
    let t0 = h.clock.now_ms();
    let award = n(&h
        .ok(
            &h.admin,
            "POST",
            "/v1/awards",
            Some(
                json!({"project": p, "gpu_model": "H200", "gpu_hours": 1000, "gpu_quota": 1,
                        "valid_from": t0 - day, "valid_until": t0 + 30 * day}),
            ),
            201,
        )
        .await["id"]);

    // Thirteen hours on one GPU; then a minute and more of samples at 3%.
    let j = h.submit(&owner, p, 1).await;
    h.step().await;
    report(&h, &agent, node, j, 1, None).await;
    h.clock.advance(Duration::from_secs(13 * 3600));
    let now = h.clock.now_ms();
    h.store.heartbeats(&[node], now).await.unwrap();
    // One batch per interval, as an agent sends them, on all eight GPUs: only the one the
    // job holds counts.
    assert_eq!(idle_samples(&h, &agent, node, j, now).await, 8);
    h.clock.advance(Duration::from_millis(1_100));
    h.store.heartbeats(&[node], h.clock.now_ms()).await.unwrap();
    h.step().await;
    let noticed_at = h.clock.now_ms();

    // The notice API: the owner and a colleague see it with the job, its owner and the stop.
    let kind = format!("gpu.idle.job.{j}");
    for who in [&owner, &colleague] {
        let all = h.ok(who, "GET", "/v1/notices", None, 200).await;
        let mine: Vec<&Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["kind"] == kind)
            .collect();
        assert_eq!(mine.len(), 1, "{all}");
        assert_eq!(mine[0]["job"], j);
        assert_eq!(mine[0]["user"], owner_id);
        assert_eq!(mine[0]["project"], p);
        assert_eq!(n(&mine[0]["stops_at"]), noticed_at + 120_000, "{all}");
    }
    let theirs = h.ok(&outsider, "GET", "/v1/notices", None, 200).await;
    assert!(
        theirs.as_array().unwrap().iter().all(|x| x["project"] != p),
        "{theirs}"
    );
    let e = h
        .ok(
            &owner,
            "GET",
            &format!("/v1/jobs/{j}/efficiency"),
            None,
            200,
        )
        .await;
    assert_eq!(n(&e["idle_stops_at"]), noticed_at + 120_000, "{e}");
    assert!(
        e["idle_notice"]
            .as_str()
            .unwrap()
            .contains("averaged under 5%")
    );

    // The portal: a banner on the owner's home page, the notice on the job's page.
    let home = portal_page(&h, &owner, "/portal").await;
    assert!(home.contains(&format!("id=\"idle-{j}\"")), "{home}");
    assert!(
        home.contains("it will be stopped (reason idle) at"),
        "{home}"
    );
    let calendar = haneul_server::calendar::Calendar::default();
    assert!(
        home.contains(&calendar.date_time(noticed_at + 120_000)),
        "{home}"
    );
    let other = portal_page(&h, &colleague, "/portal").await;
    assert!(
        !other.contains(&format!("id=\"idle-{j}\"")),
        "not the colleague's job"
    );
    let page = portal_page(&h, &colleague, &format!("/portal/jobs/{j}")).await;
    assert!(page.contains("id=\"idle-notice\""), "{page}");
    // The page reads the job's efficiency through the portal's own API: the verdict shows.
    assert!(page.contains("used none of its 1 GPUs"), "{page}");

    // Past the grace, still idle (the agent kept sampling): stopped with reason idle; the
    // agent reports it gone.
    h.clock.advance(Duration::from_secs(121));
    idle_samples(&h, &agent, node, j, h.clock.now_ms()).await;
    h.store.heartbeats(&[node], h.clock.now_ms()).await.unwrap();
    h.step().await;
    report(&h, &agent, node, j, 1, Some(143)).await;
    h.step().await;
    let ended = job(&h, j).await;
    assert_eq!(
        (ended["state"].as_str(), ended["reason"].as_str()),
        (Some("cancelled"), Some("idle")),
        "{ended}"
    );
    // Ended: the notice stays on record, with no stop to come.
    let all = h.ok(&owner, "GET", "/v1/notices", None, 200).await;
    let n_idle = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == kind)
        .unwrap();
    assert!(n_idle["stops_at"].is_null(), "{n_idle}");

    // A job with no samples: an hour charged, not measured.
    let k = h.submit(&owner, p, 1).await;
    h.step().await;
    report(&h, &agent, node, k, 1, None).await;
    h.clock.advance(Duration::from_secs(3600));
    h.store.heartbeats(&[node], h.clock.now_ms()).await.unwrap();
    report(&h, &agent, node, k, 1, Some(0)).await;
    h.step().await;

    // Underuse: the award held its GPU (charged over a quarter of the window) but used it
    // at 3%: flagged by measurement.
    let under = h.ok(&h.admin, "GET", "/v1/underuse", None, 200).await;
    let u = under
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["award"] == award)
        .unwrap_or_else(|| panic!("{under}"));
    let held = u["used_gpu_hours"].as_f64().unwrap();
    assert!(held > 14.0 && held < 14.1, "{u}");
    let j_hours = held - 1.0;
    assert!(
        (u["measured_gpu_hours"].as_f64().unwrap() - j_hours * 0.03).abs() < 1e-6,
        "{u}"
    );
    assert!(
        (u["unmeasured_gpu_hours"].as_f64().unwrap() - 1.0).abs() < 1e-3,
        "{u}"
    );
    assert!(u["used_fraction"].as_f64().unwrap() >= 0.25, "{u}");
    assert_eq!(
        (u["flagged"].as_bool(), u["flagged_by"].as_str()),
        (Some(true), Some("measured")),
        "{u}"
    );
    // One call lists both kinds for the owner: the award's underuse and the job's idle notice.
    let all = h.ok(&owner, "GET", "/v1/notices", None, 200).await;
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"award.underuse") && kinds.contains(&kind.as_str()),
        "{all}"
    );

    // Statements: charged against measured, and energy (16 samples of 100 W for 10 s).
    let rows = ledger(&h).await;
    let months: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| calendar.date(n(&r["at"]))[..7].to_string())
        .collect();
    let (mut gpu_hours, mut used, mut unmeasured, mut kwh) = (0.0, 0.0, 0.0, 0.0);
    for month in &months {
        let s = h
            .ok(
                &owner,
                "GET",
                &format!("/v1/statements?month={month}"),
                None,
                200,
            )
            .await;
        for l in s["lines"].as_array().unwrap() {
            gpu_hours += l["gpu_hours"].as_f64().unwrap();
            used += l["used_gpu_hours"].as_f64().unwrap();
            unmeasured += l["unmeasured_gpu_hours"].as_f64().unwrap();
            kwh += l["energy_kwh"].as_f64().unwrap();
        }
        let csv = raw_get(&h, &format!("/v1/statements?month={month}&format=csv")).await;
        assert!(
            csv.starts_with(
                "month,org,project,gpu_model,gpu_hours,charged_gpu_hours,\
                             refunded_gpu_hours,credited_gpu_hours,used_gpu_hours,\
                             unmeasured_gpu_hours,energy_kwh"
            ),
            "{csv}"
        );
    }
    assert!((gpu_hours - held).abs() < 1e-6, "{gpu_hours} {held}");
    assert!((used - j_hours * 0.03).abs() < 1e-6, "{used}");
    assert!((unmeasured - 1.0).abs() < 1e-3, "{unmeasured}");
    assert!(
        (kwh - 16.0 * (100 * 10_000 / 3600) as f64 / 1e6).abs() < 1e-9,
        "{kwh}"
    );
    // The portal's statement shows the same columns.
    let month = months.iter().next_back().unwrap();
    let page = portal_page(&h, &owner, &format!("/portal/statements?month={month}")).await;
    assert!(
        page.contains("GPU-hours used (measured)") && page.contains("class=\"energy\""),
        "{page}"
    );
}

/// Pure: the underuse report's two flags and a statement line's measured columns, from ledger
/// rows and measured figures made up here.
#[test]
fn underuse_flags_awards_held_but_idle_by_measurement() {
    const H: i64 = 3_600_000;
    let now = 100 * H;
    let award = |id: i64| st::AwardBalance {
        award: st::AwardRecord {
            id,
            project_id: 5,
            gpu_model: GpuModel::new("H200").unwrap(),
            gpu_hours: 10_000,
            valid_from: 0,
            valid_until: 1000 * H,
            gpu_quota: 8,
            application_id: None,
            created_at: 0,
        },
        granted_ms: 10_000 * H,
        used_ms: 0,
    };
    let charge = |award: i64, attempt: i64, gpu_ms: i64| st::LedgerEntry {
        id: attempt,
        at: now - H,
        kind: st::LedgerKind::Charge,
        attempt_id: attempt,
        project_id: 5,
        org_id: 2,
        award_id: Some(award),
        gpu_model: "H200".into(),
        gpu_ms,
        weight_milli: 1000,
        charged_ms: gpu_ms,
    };
    let use_of = |attempt: i64, job: i64, util: i64, gpu_ms: i64| st::ChargedGpuUse {
        attempt_id: attempt,
        job_id: job,
        samples: 10,
        util_sum: util * 10,
        energy_mwh: 1000,
        job_charged_gpu_ms: gpu_ms,
    };
    // Over the 14-day default window (clipped to the 100 hours since valid_from), award 1
    // holds its 8 GPUs all the time at 3%; award 2 at 90%; award 3 holds them with no
    // samples; award 4 barely holds them.
    let full = 8 * 100 * H;
    let ledger = vec![
        charge(1, 11, full),
        charge(2, 12, full),
        charge(3, 13, full),
        charge(4, 14, full / 10),
    ];
    let measured = accounting::Measured::new(vec![
        use_of(11, 1, 3, full),
        use_of(12, 2, 90, full),
        use_of(14, 4, 90, full / 10),
    ]);
    let policy = AccountingPolicy::default();
    let report = accounting::underuse(
        &[award(1), award(2), award(3), award(4)],
        &ledger,
        &measured,
        &policy,
        now,
    );
    let flags: Vec<(i64, Option<&str>)> = report
        .iter()
        .map(|u| (u.award, u.flagged_by.as_deref()))
        .collect();
    assert_eq!(
        flags,
        vec![
            (1, Some("measured")),
            (2, None),
            (3, None),
            (4, Some("charged"))
        ]
    );
    assert!((report[0].used_fraction - 1.0).abs() < 1e-9);
    assert!((report[0].measured_fraction - 0.03).abs() < 1e-9);
    assert!((report[0].measured_gpu_hours - 24.0).abs() < 1e-9);
    // No samples: unknown, shown apart, not used.
    assert_eq!(report[2].measured_gpu_hours, 0.0);
    assert!((report[2].unmeasured_gpu_hours - 800.0).abs() < 1e-9);
    // A refunded attempt counts neither way.
    let mut refunded = ledger.clone();
    refunded.push(st::LedgerEntry {
        kind: st::LedgerKind::Refund,
        gpu_ms: -full,
        charged_ms: -full,
        ..charge(3, 13, full)
    });
    let r = accounting::underuse(&[award(3)], &refunded, &measured, &policy, now);
    assert_eq!(r[0].unmeasured_gpu_hours, 0.0);
    assert_eq!(r[0].flagged_by.as_deref(), Some("charged"));

    // The statement line of award 1's charge: 3% of 800 GPU-hours used, its job's energy.
    let stmt = accounting::statement("x", 0, now, &ledger[..1], &measured);
    let l = &stmt.lines[0];
    assert!((l.gpu_hours - 800.0).abs() < 1e-9);
    assert!((l.used_gpu_hours - 24.0).abs() < 1e-9);
    assert_eq!(l.unmeasured_gpu_hours, 0.0);
    assert!((l.energy_kwh - 0.001).abs() < 1e-12);
}

macro_rules! both {
    ($($name:ident),+) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Harness::sqlite().await).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Harness::postgres().await).await })+
        }
    };
}

both!(
    whole_call,
    award_dates_and_korean_errors,
    screening,
    compute_threshold_notice,
    ledger_under_concurrent_attempts,
    idle_notice_measured_underuse_and_statement
);
