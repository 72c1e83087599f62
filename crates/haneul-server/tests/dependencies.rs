//! Job dependencies through the API and the controller, and project quota changes, on both
//! backends: a dependent job waits outside the engine, starts when its parents end, fails
//! naming the parent when an `afterok` parent fails (and so do its own dependants), survives an
//! engine rebuild, and bad or foreign parents are refused naming the field.

mod common;

use common::Harness;
use serde_json::{Value, json};

async fn submit_after(h: &Harness, token: &str, project: i64, gpus: u32, deps: Value) -> i64 {
    h.ok(
        token,
        "POST",
        "/v1/jobs",
        Some(
            json!({"project": project, "command": ["true"], "gpus_per_task": gpus,
                    "dependencies": deps}),
        ),
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

async fn report(h: &Harness, agent: &str, node: i64, job: i64, exit: Option<i64>) {
    h.ok(
        agent,
        "POST",
        &format!("/v1/agent/nodes/{node}/reports"),
        Some(json!({"job": job, "fence": 1, "task": 0, "exit_code": exit})),
        200,
    )
    .await;
}

async fn detail(h: &Harness, id: i64) -> Value {
    h.ok(&h.admin, "GET", &format!("/v1/jobs/{id}"), None, 200)
        .await
}

async fn afterok_afterany_and_cascades(mut h: Harness) {
    let org = h.org("kaist").await;
    let project = h.project(org, "llm").await;
    let (_, user) = h.user("kim", "member", Some(org), &[project]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;

    let parent = h.submit(&user, project, 4).await;
    let ok_child = submit_after(
        &h,
        &user,
        project,
        1,
        json!([{"kind": "afterok", "job": parent}]),
    )
    .await;
    let grandchild = submit_after(
        &h,
        &user,
        project,
        1,
        json!([{"kind": "afterok", "job": ok_child}]),
    )
    .await;
    let any_child = submit_after(
        &h,
        &user,
        project,
        1,
        json!([{"kind": "afterany", "job": parent}]),
    )
    .await;
    h.step().await;
    // Free GPUs do not start a job whose parent has not ended.
    assert_eq!(h.job_state(parent).await, "running");
    for id in [ok_child, grandchild, any_child] {
        let d = detail(&h, id).await;
        assert_eq!(d["job"]["state"], "queued");
        assert_eq!(d["attempts"], json!([]), "job {id} started early");
    }
    assert_eq!(
        detail(&h, ok_child).await["job"]["dependencies"],
        json!([{"kind": "afterok", "job": parent}])
    );

    report(&h, &agent, node, parent, None).await;
    report(&h, &agent, node, parent, Some(1)).await;
    h.step().await;
    h.step().await;
    assert_eq!(h.job_state(parent).await, "failed");
    let failed = detail(&h, ok_child).await["job"].clone();
    assert_eq!(failed["state"], "failed");
    assert_eq!(
        failed["reason"],
        format!("dependency afterok:{parent} can never be met: job {parent} ended failed")
    );
    // Its own dependant fails in turn, naming it.
    let gc = detail(&h, grandchild).await["job"].clone();
    assert_eq!(gc["state"], "failed");
    assert!(
        gc["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("afterok:{ok_child}")),
        "{gc}"
    );
    assert_eq!(h.job_state(any_child).await, "running");
}

async fn held_jobs_survive_a_rebuild_and_start_after_success(mut h: Harness) {
    let org = h.org("kaist").await;
    let project = h.project(org, "llm").await;
    let (_, user) = h.user("kim", "member", Some(org), &[project]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;
    let parent = h.submit(&user, project, 8).await;
    h.step().await;
    let child = submit_after(
        &h,
        &user,
        project,
        8,
        json!([{"kind": "afterok", "job": parent}]),
    )
    .await;
    h.step().await;
    // New inventory rebuilds the engine from the store; the child must stay held.
    let (_, agent2) = h.user("agent-2", "agent", None, &[]).await;
    h.node(&agent2, "gpu-002").await;
    h.step().await;
    h.step().await;
    assert_eq!(detail(&h, child).await["attempts"], json!([]));
    report(&h, &agent, node, parent, None).await;
    report(&h, &agent, node, parent, Some(0)).await;
    h.step().await;
    h.step().await;
    assert_eq!(h.job_state(parent).await, "succeeded");
    assert_eq!(h.job_state(child).await, "running");
}

async fn bad_and_foreign_parents_are_refused(h: Harness) {
    let org = h.org("kaist").await;
    let other = h.org("snu").await;
    let project = h.project(org, "llm").await;
    let theirs = h.project(other, "vision").await;
    let (_, user) = h.user("kim", "member", Some(org), &[project]).await;
    let (_, stranger) = h.user("lee", "member", Some(other), &[theirs]).await;
    let foreign = h.submit(&stranger, theirs, 1).await;
    for (deps, field) in [
        (
            json!([{"kind": "afterok", "job": 999_999}]),
            "dependencies[0].job",
        ),
        (
            json!([{"kind": "afterok", "job": foreign}]),
            "dependencies[0].job",
        ),
        (
            json!([{"kind": "after", "job": foreign}]),
            "dependencies[0].kind",
        ),
        (
            json!([{"kind": "afterok", "job": 0}]),
            "dependencies[0].job",
        ),
        (json!([{"kind": "afterok"}]), ""),
    ] {
        let (status, v) = h
            .call(
                Some(&user),
                "POST",
                "/v1/jobs",
                Some(
                    json!({"project": project, "command": ["true"], "gpus_per_task": 1,
                            "dependencies": deps}),
                ),
            )
            .await;
        assert_eq!(status.as_u16(), 400, "{deps}: {v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{deps}: {v}");
        }
        // A foreign job is refused exactly like a missing one: nothing of it leaks.
        assert!(!v.to_string().contains("snu"), "{v}");
    }
}

async fn project_quotas_are_replaced_by_their_managers(h: Harness) {
    let org = h.org("kaist").await;
    let other = h.org("snu").await;
    let project = h.project(org, "llm").await;
    let (_, member) = h.user("kim", "member", Some(org), &[project]).await;
    let (_, org_admin) = h.user("park", "org-admin", Some(org), &[]).await;
    let (_, other_admin) = h.user("lee", "org-admin", Some(other), &[]).await;
    let path = format!("/v1/projects/{project}/quotas");
    let body = json!({"quotas": [{"gpu_model": "H200", "guaranteed_milli": 8000,
                                  "borrow_limit_milli": 16000}]});
    h.ok(&member, "PUT", &path, Some(body.clone()), 403).await;
    h.ok(&other_admin, "PUT", &path, Some(body.clone()), 404)
        .await;
    let p = h
        .ok(&org_admin, "PUT", &path, Some(body.clone()), 200)
        .await;
    assert_eq!(p["quotas"], body["quotas"]);
    let p = h
        .ok(&h.admin, "PUT", &path, Some(json!({"quotas": []})), 200)
        .await;
    assert_eq!(p["quotas"], json!([]));
    let (status, v) = h
        .call(
            Some(&h.admin),
            "PUT",
            &path,
            Some(json!({"quotas": [{"gpu_model": "", "guaranteed_milli": 1}]})),
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{v}");
    assert_eq!(v["error"]["field"], "quotas[0].gpu_model");
    h.ok(
        &h.admin,
        "PUT",
        "/v1/projects/999999/quotas",
        Some(body),
        404,
    )
    .await;
    let audit = h.ok(&h.admin, "GET", "/v1/audit", None, 200).await;
    let changes = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "project.set_quotas")
        .count();
    assert_eq!(changes, 2);
}

macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Harness::sqlite().await).await })+
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Harness::postgres().await).await })+
        }
    };
}

both!(
    afterok_afterany_and_cascades,
    held_jobs_survive_a_rebuild_and_start_after_success,
    bad_and_foreign_parents_are_refused,
    project_quotas_are_replaced_by_their_managers,
);
