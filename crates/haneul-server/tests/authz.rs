//! The authorisation matrix: every role against every endpoint, cross-tenant attempts included.
//! A cell is the status the role must get; objects of another tenant answer 404 (or 400 when
//! named in a body), so their existence does not leak.

mod common;

use common::Harness;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const ROLES: [&str; 8] = [
    "none",
    "admin",
    "auditor",
    "orgadmin_a",
    "member_a",
    "member_a2",
    "member_b",
    "agent",
];

struct World {
    h: Harness,
    tokens: BTreeMap<&'static str, String>,
    org_a: i64,
    org_b: i64,
    pa: i64,
    member_a: i64,
    member_b: i64,
    node: i64,
    job_a: i64,
    job_b: i64,
}

async fn world() -> World {
    let mut h = Harness::sqlite().await;
    let org_a = h.org("org-a").await;
    let org_b = h.org("org-b").await;
    let pa = h.project(org_a, "pa").await;
    let pa2 = h.project(org_a, "pa2").await;
    let pb = h.project(org_b, "pb").await;
    let mut tokens = BTreeMap::new();
    tokens.insert("admin", h.admin.clone());
    let (_, t) = h.user("auditor", "auditor", None, &[]).await;
    tokens.insert("auditor", t);
    let (_, t) = h.user("orgadmin-a", "org-admin", Some(org_a), &[]).await;
    tokens.insert("orgadmin_a", t);
    let (member_a, t) = h.user("member-a", "member", Some(org_a), &[pa]).await;
    tokens.insert("member_a", t);
    let (_, t) = h.user("member-a2", "member", Some(org_a), &[pa2]).await;
    tokens.insert("member_a2", t);
    let (member_b, t) = h.user("member-b", "member", Some(org_b), &[pb]).await;
    tokens.insert("member_b", t);
    let (_, t) = h.user("agent", "agent", None, &[]).await;
    tokens.insert("agent", t.clone());
    let node = h.node(&t, "gpu-001").await;
    let job_a = h.submit(&tokens["member_a"], pa, 1).await;
    let job_b = h.submit(&tokens["member_b"], pb, 1).await;
    h.step().await;
    World {
        h,
        tokens,
        org_a,
        org_b,
        pa,
        member_a,
        member_b,
        node,
        job_a,
        job_b,
    }
}

impl World {
    async fn check(&self, method: &str, path: &str, body: Option<Value>, want: &[(&str, u16)]) {
        let want: BTreeMap<&str, u16> = want.iter().copied().collect();
        for role in ROLES {
            let Some(&status) = want.get(role) else {
                continue;
            };
            let token = self.tokens.get(role).map(String::as_str);
            let (got, v) = self.h.call(token, method, path, body.clone()).await;
            assert_eq!(
                got.as_u16(),
                status,
                "{role} {method} {path} answered {got}: {v}"
            );
            if got.is_client_error() {
                assert!(
                    v["error"]["code"].is_string(),
                    "{role} {method} {path}: {v}"
                );
            }
        }
    }
}

/// Every human role, for cells where all of them get the same answer.
fn humans(status: u16) -> Vec<(&'static str, u16)> {
    [
        "admin",
        "auditor",
        "orgadmin_a",
        "member_a",
        "member_a2",
        "member_b",
    ]
    .iter()
    .map(|r| (*r, status))
    .chain([("none", 401), ("agent", 403)])
    .collect()
}

fn only_admin(ok: u16) -> Vec<(&'static str, u16)> {
    let mut v: Vec<_> = humans(403);
    v.retain(|(r, _)| *r != "admin");
    v.push(("admin", ok));
    v
}

#[tokio::test]
async fn every_role_against_every_endpoint() {
    let w = world().await;
    let (a, b) = (w.org_a, w.org_b);
    let (ja, jb) = (w.job_a, w.job_b);

    w.check(
        "GET",
        "/v1/whoami",
        None,
        &[
            ("none", 401),
            ("admin", 200),
            ("auditor", 200),
            ("member_b", 200),
            ("agent", 200),
        ],
    )
    .await;

    // Organisations.
    w.check(
        "POST",
        "/v1/orgs",
        Some(json!({"name": "x", "country": "KR"})),
        &only_admin(201),
    )
    .await;
    w.check("GET", "/v1/orgs", None, &humans(200)).await;
    w.check(
        "GET",
        &format!("/v1/orgs/{a}"),
        None,
        &[
            ("none", 401),
            ("admin", 200),
            ("auditor", 200),
            ("orgadmin_a", 200),
            ("member_a", 200),
            ("member_a2", 200),
            ("member_b", 404),
            ("agent", 403),
        ],
    )
    .await;
    w.check(
        "GET",
        &format!("/v1/orgs/{b}"),
        None,
        &[("orgadmin_a", 404), ("member_a", 404), ("member_b", 200)],
    )
    .await;

    // Projects: created by the centre or the organisation's admin.
    w.check(
        "POST",
        "/v1/projects",
        Some(json!({"org": a, "name": "new-by-admin"})),
        &[
            ("none", 401),
            ("admin", 201),
            ("auditor", 403),
            ("member_a", 403),
            ("member_b", 400),
            ("agent", 403),
        ],
    )
    .await;
    w.check(
        "POST",
        "/v1/projects",
        Some(json!({"org": a, "name": "new-by-orgadmin"})),
        &[("orgadmin_a", 201)],
    )
    .await;
    w.check(
        "POST",
        "/v1/projects",
        Some(json!({"org": b, "name": "cross"})),
        &[("orgadmin_a", 400)],
    )
    .await;
    w.check("GET", "/v1/projects", None, &humans(200)).await;
    w.check(
        "GET",
        &format!("/v1/projects/{}", w.pa),
        None,
        &[
            ("none", 401),
            ("admin", 200),
            ("auditor", 200),
            ("orgadmin_a", 200),
            ("member_a", 200),
            ("member_a2", 404),
            ("member_b", 404),
            ("agent", 403),
        ],
    )
    .await;

    // Users and tokens.
    w.check(
        "POST",
        "/v1/users",
        Some(json!({"name": "n1", "role": "member", "org": a})),
        &[
            ("none", 401),
            ("auditor", 403),
            ("member_a", 403),
            ("member_b", 403),
            ("agent", 403),
            ("orgadmin_a", 201),
        ],
    )
    .await;
    w.check(
        "POST",
        "/v1/users",
        Some(json!({"name": "n2", "role": "member", "org": b})),
        &[("orgadmin_a", 403), ("admin", 201)],
    )
    .await;
    w.check(
        "POST",
        "/v1/users",
        Some(json!({"name": "n3", "role": "centre-admin"})),
        &[("orgadmin_a", 403)],
    )
    .await;
    w.check("GET", "/v1/users", None, &humans(200)).await;
    w.check(
        "GET",
        &format!("/v1/users/{}", w.member_b),
        None,
        &[
            ("none", 401),
            ("admin", 200),
            ("auditor", 200),
            ("orgadmin_a", 404),
            ("member_a", 404),
            ("member_b", 200),
            ("agent", 403),
        ],
    )
    .await;
    w.check(
        "POST",
        "/v1/tokens",
        Some(json!({"user": w.member_a})),
        &[
            ("none", 401),
            ("admin", 201),
            ("orgadmin_a", 201),
            ("member_a", 201),
            ("auditor", 403),
            ("member_a2", 400),
            ("member_b", 400),
            ("agent", 403),
        ],
    )
    .await;
    w.check("POST", "/v1/tokens", Some(json!({})), &humans(201))
        .await;
    w.check("GET", "/v1/tokens", None, &humans(200)).await;

    // Fleet.
    w.check(
        "POST",
        "/v1/pools",
        Some(json!({"name": "partner"})),
        &only_admin(201),
    )
    .await;
    w.check("GET", "/v1/pools", None, &humans(200)).await;
    w.check("GET", "/v1/nodes", None, &humans(200)).await;
    w.check("GET", &format!("/v1/nodes/{}", w.node), None, &humans(200))
        .await;
    w.check(
        "POST",
        &format!("/v1/nodes/{}/state", w.node),
        Some(json!({"state": "up"})),
        &only_admin(200),
    )
    .await;

    // Jobs.
    let submit = json!({"project": w.pa, "command": ["true"], "gpus_per_task": 1});
    w.check(
        "POST",
        "/v1/jobs",
        Some(submit),
        &[
            ("none", 401),
            ("admin", 201),
            ("orgadmin_a", 201),
            ("member_a", 201),
            ("auditor", 403),
            ("member_a2", 400),
            ("member_b", 400),
            ("agent", 403),
        ],
    )
    .await;
    w.check("GET", "/v1/jobs", None, &humans(200)).await;
    for path in [format!("/v1/jobs/{ja}"), format!("/v1/jobs/{ja}/logs")] {
        let auditor = if path.ends_with("logs") { 403 } else { 200 };
        w.check(
            "GET",
            &path,
            None,
            &[
                ("none", 401),
                ("admin", 200),
                ("auditor", auditor),
                ("orgadmin_a", 200),
                ("member_a", 200),
                ("member_a2", 404),
                ("member_b", 404),
                ("agent", 403),
            ],
        )
        .await;
    }
    w.check(
        "GET",
        &format!("/v1/jobs/{jb}"),
        None,
        &[("member_b", 200), ("member_a", 404), ("orgadmin_a", 404)],
    )
    .await;
    // Denials first: they must leave the job alone.
    w.check(
        "POST",
        &format!("/v1/jobs/{ja}/cancel"),
        None,
        &[
            ("none", 401),
            ("auditor", 403),
            ("member_a2", 404),
            ("member_b", 404),
            ("agent", 403),
        ],
    )
    .await;
    assert_eq!(w.h.job_state(ja).await, "running");
    w.check(
        "POST",
        &format!("/v1/jobs/{ja}/cancel"),
        None,
        &[("member_a", 200)],
    )
    .await;
    w.check(
        "POST",
        &format!("/v1/jobs/{jb}/cancel"),
        None,
        &[("orgadmin_a", 404), ("admin", 200)],
    )
    .await;

    // Awards, usage, audit.
    let award = json!({"project": w.pa, "gpu_model": "H200", "gpu_hours": 100,
                       "valid_from": 0, "valid_until": 1});
    w.check("POST", "/v1/awards", Some(award), &only_admin(201))
        .await;
    w.check("GET", "/v1/awards", None, &humans(200)).await;
    w.check("GET", "/v1/usage", None, &humans(200)).await;
    w.check("GET", "/v1/usage/series", None, &humans(200)).await;
    // Operators' reads: the audit log and the fleet summary.
    for path in ["/v1/audit", "/v1/audit/verify", "/v1/fleet/summary"] {
        w.check(
            "GET",
            path,
            None,
            &[
                ("none", 401),
                ("admin", 200),
                ("auditor", 200),
                ("orgadmin_a", 403),
                ("member_a", 403),
                ("member_b", 403),
                ("agent", 403),
            ],
        )
        .await;
    }

    // The agent protocol: agents only, each on its own node.
    let n = w.node;
    let agent_only = [
        ("none", 401),
        ("admin", 403),
        ("auditor", 403),
        ("member_a", 403),
        ("agent", 200),
    ];
    w.check(
        "POST",
        &format!("/v1/agent/nodes/{n}/heartbeat"),
        None,
        &agent_only,
    )
    .await;
    w.check(
        "GET",
        &format!("/v1/agent/nodes/{n}/assignments"),
        None,
        &agent_only,
    )
    .await;
    w.check(
        "POST",
        &format!("/v1/agent/nodes/{n}/health"),
        Some(json!({})),
        &agent_only,
    )
    .await;
    w.check(
        "POST",
        "/v1/agent/register",
        Some(json!({"name": "gpu-002", "gpu_model": "H200", "gpus": 8,
                    "cpu_milli": 1000, "memory_mib": 1000})),
        &agent_only,
    )
    .await;
    let (_, other_agent) = w.h.user("agent2", "agent", None, &[]).await;
    let (s, _) =
        w.h.call(
            Some(&other_agent),
            "POST",
            &format!("/v1/agent/nodes/{n}/heartbeat"),
            None,
        )
        .await;
    assert_eq!(
        s.as_u16(),
        404,
        "an agent may not act for another agent's node"
    );
    let (s, _) =
        w.h.call(
            Some(&other_agent),
            "POST",
            "/v1/agent/register",
            Some(json!({"name": "gpu-001", "gpu_model": "H200", "gpus": 8,
                        "cpu_milli": 1000, "memory_mib": 1000})),
        )
        .await;
    assert_eq!(
        s.as_u16(),
        409,
        "an agent may not take over another agent's node"
    );
}

#[tokio::test]
async fn listings_hold_only_the_callers_tenant() {
    let w = world().await;
    let list = |role: &'static str| {
        let t = w.tokens[role].clone();
        let h = &w.h;
        async move { h.ok(&t, "GET", "/v1/jobs", None, 200).await }
    };
    let ids = |v: Value| -> Vec<i64> {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(list("member_a").await), vec![w.job_a]);
    assert_eq!(ids(list("member_b").await), vec![w.job_b]);
    assert_eq!(ids(list("orgadmin_a").await), vec![w.job_a]);
    assert!(ids(list("member_a2").await).is_empty());
    assert_eq!(ids(list("auditor").await), vec![w.job_b, w.job_a]);
    // Asking for another tenant's project by filter gives nothing.
    let v =
        w.h.ok(
            &w.tokens["member_b"],
            "GET",
            &format!("/v1/jobs?project={}", w.pa),
            None,
            200,
        )
        .await;
    assert!(ids(v).is_empty());
    let orgs =
        w.h.ok(&w.tokens["member_b"], "GET", "/v1/orgs", None, 200)
            .await;
    assert_eq!(orgs.as_array().unwrap().len(), 1);
    assert_eq!(orgs[0]["id"].as_i64(), Some(w.org_b));
    let users =
        w.h.ok(&w.tokens["member_a"], "GET", "/v1/users", None, 200)
            .await;
    assert_eq!(users.as_array().unwrap().len(), 1);
    let usage =
        w.h.ok(&w.tokens["member_b"], "GET", "/v1/usage", None, 200)
            .await;
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["project"] != json!(w.pa))
    );
}

/// Error answers say nothing of other tenants: a taken user name is a 409 that neither echoes
/// the name nor its organisation, and another organisation's project is answered exactly as
/// one that does not exist.
#[tokio::test]
async fn refusals_name_nothing_of_other_tenants() {
    let w = world().await;
    let admin_a = &w.tokens["orgadmin_a"];
    let user = |name: &str, projects: Vec<i64>| json!({"name": name, "role": "member", "org": w.org_a, "projects": projects});
    let (s, v) =
        w.h.call(
            Some(admin_a),
            "POST",
            "/v1/users",
            Some(user("member-b", vec![])),
        )
        .await;
    assert_eq!(s.as_u16(), 409, "{v}");
    let text = v.to_string();
    assert!(
        !text.contains("member-b") && !text.contains("org-b"),
        "{text}"
    );
    let pb =
        w.h.ok(&w.tokens["member_b"], "GET", "/v1/projects", None, 200)
            .await[0]["id"]
            .as_i64()
            .unwrap();
    let missing = pb + 1000;
    let (s_other, other) =
        w.h.call(
            Some(admin_a),
            "POST",
            "/v1/users",
            Some(user("new-1", vec![pb])),
        )
        .await;
    let (s_missing, none) =
        w.h.call(
            Some(admin_a),
            "POST",
            "/v1/users",
            Some(user("new-2", vec![missing])),
        )
        .await;
    assert_eq!(s_other, s_missing, "{other} / {none}");
    assert!(s_other.is_client_error(), "{other}");
    assert_eq!(
        other.to_string().replace(&pb.to_string(), "N"),
        none.to_string().replace(&missing.to_string(), "N")
    );
    // The same for a job submitted to it by a member of another organisation.
    let job = |p: i64| json!({"project": p, "command": ["true"], "gpus_per_task": 1});
    let (s_other, other) =
        w.h.call(
            Some(&w.tokens["member_a"]),
            "POST",
            "/v1/jobs",
            Some(job(pb)),
        )
        .await;
    let (s_missing, none) =
        w.h.call(
            Some(&w.tokens["member_a"]),
            "POST",
            "/v1/jobs",
            Some(job(missing)),
        )
        .await;
    assert_eq!(s_other, s_missing, "{other} / {none}");
    assert_eq!(
        other.to_string().replace(&pb.to_string(), "N"),
        none.to_string().replace(&missing.to_string(), "N")
    );
}

#[tokio::test]
async fn revoked_tokens_stop_at_once() {
    let h = Harness::sqlite().await;
    let org = h.org("o").await;
    let (_, t) = h.user("u", "member", Some(org), &[]).await;
    h.ok(&t, "GET", "/v1/whoami", None, 200).await;
    let tokens = h.ok(&h.admin, "GET", "/v1/tokens", None, 200).await;
    let id = tokens.as_array().unwrap().last().unwrap()["id"]
        .as_i64()
        .unwrap();
    h.ok(&h.admin, "DELETE", &format!("/v1/tokens/{id}"), None, 200)
        .await;
    let (s, _) = h.call(Some(&t), "GET", "/v1/whoami", None).await;
    assert_eq!(
        s.as_u16(),
        401,
        "a revoked token must not outlive the cache"
    );
}

/// Roles that only read what operators read: centre admins and auditors.
fn operators_read(ok: u16) -> Vec<(&'static str, u16)> {
    let mut v = humans(403);
    for cell in &mut v {
        if matches!(cell.0, "admin" | "auditor") {
            cell.1 = ok;
        }
    }
    v
}

/// The awards, compliance and programme endpoints, added after the matrix above was drawn:
/// who may read balances, ledgers and statements, who may change awards, weights and
/// screening, and who may run a call from creation to its awards.
#[tokio::test]
async fn awards_compliance_and_programmes_by_role() {
    let w = world().await;
    let (pa, b) = (w.pa, w.org_b);

    // Reading the accounts: every person, within what they may see.
    for path in [
        "/v1/balances",
        "/v1/ledger",
        "/v1/compute",
        "/v1/gpu-weights",
        "/v1/statements?month=2026-12",
        "/v1/statements?month=2026-12&format=csv",
    ] {
        w.check("GET", path, None, &humans(200)).await;
    }
    w.check("GET", "/v1/statements?month=12-2026", None, &humans(400))
        .await;
    w.check(
        "GET",
        &format!("/v1/statements?month=2026-12&org={b}"),
        None,
        &[
            ("none", 401),
            ("admin", 200),
            ("auditor", 200),
            ("orgadmin_a", 404),
            ("member_a", 404),
            ("member_b", 200),
            ("agent", 403),
        ],
    )
    .await;
    // Everyone reads the notices about the projects they may see (scoped in awards.rs's
    // idle notice test); underuse and screening are for operators.
    w.check("GET", "/v1/notices", None, &humans(200)).await;
    for path in ["/v1/underuse", "/v1/denied-parties"] {
        w.check("GET", path, None, &operators_read(200)).await;
    }

    // Changing awards, weights and screening: centre admins only.
    let (s, award) =
        w.h.call(
            Some(&w.h.admin),
            "POST",
            "/v1/awards",
            Some(json!({"project": pa, "gpu_model": "H200", "gpu_hours": 100,
                        "valid_from": 0, "valid_until": 4_102_444_800_000_i64})),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{award}");
    let award = award["id"].as_i64().unwrap();
    w.check(
        "POST",
        &format!("/v1/awards/{award}/adjust"),
        Some(json!({"gpu_hours": 10, "reason": "review panel top-up"})),
        &only_admin(201),
    )
    .await;
    w.check(
        "GET",
        &format!("/v1/awards/{award}/changes"),
        None,
        &[
            ("none", 401),
            ("admin", 200),
            ("auditor", 200),
            ("orgadmin_a", 200),
            ("member_a", 200),
            ("member_a2", 404),
            ("member_b", 404),
            ("agent", 403),
        ],
    )
    .await;
    w.check(
        "PUT",
        "/v1/gpu-weights",
        Some(json!({"gpu_model": "H200", "weight": 1.5})),
        &only_admin(200),
    )
    .await;
    w.check(
        "POST",
        &format!("/v1/orgs/{b}/verify"),
        Some(json!({"status": "verified"})),
        &only_admin(200),
    )
    .await;
    w.check(
        "POST",
        "/v1/denied-parties",
        Some(json!({"csv": "name,country\nShadow Compute Ltd,XX\n", "source": "test list"})),
        &only_admin(201),
    )
    .await;

    // A call from creation to its awards.
    let call_body = json!({"programme": "national-ai", "name": "2027 spring",
        "gpu_model": "H200", "capacity_gpus": 16,
        "tracks": [{"name": "small", "max_gpus": 4, "max_days": 90}]});
    w.check(
        "POST",
        "/v1/calls",
        Some(call_body.clone()),
        &only_admin(201),
    )
    .await;
    let (_, calls) = w.h.call(Some(&w.h.admin), "GET", "/v1/calls", None).await;
    let call = calls[0]["id"].as_i64().unwrap();
    w.check("GET", "/v1/calls", None, &humans(200)).await;
    w.check("GET", &format!("/v1/calls/{call}"), None, &humans(200))
        .await;
    w.check("GET", "/v1/calls/999999", None, &humans(404)).await;
    w.check(
        "POST",
        &format!("/v1/calls/{call}/state"),
        Some(json!({"state": "open"})),
        &only_admin(200),
    )
    .await;
    // Applying is for the project's organisation admin (or a centre admin); a project the
    // caller cannot see is refused as a bad field, so its existence does not leak.
    let application = |project: i64| {
        json!({"project": project, "track": "small", "gpus": 2, "days": 30,
               "plan": "fine-tune a Korean legal-domain model"})
    };
    w.check(
        "POST",
        &format!("/v1/calls/{call}/applications"),
        Some(application(pa)),
        &[
            ("none", 401),
            ("auditor", 403),
            ("member_a", 403),
            ("member_a2", 400),
            ("member_b", 400),
            ("agent", 403),
            ("orgadmin_a", 201),
        ],
    )
    .await;
    let (_, projects) =
        w.h.call(Some(&w.tokens["member_b"]), "GET", "/v1/projects", None)
            .await;
    let pb = projects[0]["id"].as_i64().unwrap();
    w.check(
        "POST",
        &format!("/v1/calls/{call}/applications"),
        Some(application(pb)),
        &[("orgadmin_a", 400), ("admin", 201)],
    )
    .await;
    w.check(
        "GET",
        &format!("/v1/calls/{call}/applications"),
        None,
        &humans(200),
    )
    .await;
    // Each sees the applications of the projects they may see, and no other.
    let mut both = vec![pa, pb];
    both.sort_unstable();
    assert_eq!(w.applicants(call, "admin").await, both);
    assert_eq!(w.applicants(call, "auditor").await, both);
    assert_eq!(w.applicants(call, "orgadmin_a").await, vec![pa]);
    assert_eq!(w.applicants(call, "member_a").await, vec![pa]);
    assert!(w.applicants(call, "member_a2").await.is_empty());
    assert_eq!(w.applicants(call, "member_b").await, vec![pb]);

    let (_, apps) =
        w.h.call(
            Some(&w.h.admin),
            "GET",
            &format!("/v1/calls/{call}/applications"),
            None,
        )
        .await;
    for app in apps.as_array().unwrap() {
        w.check(
            "POST",
            &format!("/v1/applications/{}/scores", app["id"]),
            Some(json!({"score": 7, "reviewer": "panel-1"})),
            &only_admin(201),
        )
        .await;
    }
    // Review is blind: the applicant learns the mean, not who scored what or wrote what.
    let path = format!("/v1/calls/{call}/applications");
    let (_, mine) =
        w.h.call(Some(&w.tokens["member_a"]), "GET", &path, None)
            .await;
    assert_eq!(mine[0]["scores"], json!([]), "{mine}");
    assert_eq!(mine[0]["mean_score"], json!(7.0), "{mine}");
    let (_, all) =
        w.h.call(Some(&w.tokens["auditor"]), "GET", &path, None)
            .await;
    assert_eq!(all[0]["scores"][0]["reviewer"], "panel-1", "{all}");
    w.check(
        "POST",
        &format!("/v1/calls/{call}/award"),
        None,
        &only_admin(201),
    )
    .await;
    let (_, done) =
        w.h.call(Some(&w.h.admin), "GET", &format!("/v1/calls/{call}"), None)
            .await;
    assert_eq!(done["state"], "awarded", "{done}");
}

impl World {
    /// The projects of the call's applications that `role` is shown, sorted.
    async fn applicants(&self, call: i64, role: &str) -> Vec<i64> {
        let path = format!("/v1/calls/{call}/applications");
        let (_, v) = self
            .h
            .call(Some(&self.tokens[role]), "GET", &path, None)
            .await;
        let mut projects: Vec<i64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["project"].as_i64().unwrap())
            .collect();
        projects.sort_unstable();
        projects
    }
}
