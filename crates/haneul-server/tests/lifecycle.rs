//! Jobs through the HTTP API and the controller: the state machine end to end, fencing of stale
//! agents, node loss, preemption, and bad input answered 4xx with the field named.

mod common;

use common::Harness;
use haneul_server::clock::Clock;
use serde_json::{Value, json};

struct Setup {
    h: Harness,
    user: String,
    agent: String,
    project: i64,
    node: i64,
}

async fn setup(h: Harness) -> Setup {
    let org = h.org("kaist").await;
    let project = h.project(org, "llm").await;
    let (_, user) = h.user("kim", "member", Some(org), &[project]).await;
    let (_, agent) = h.user("agent-1", "agent", None, &[]).await;
    let node = h.node(&agent, "gpu-001").await;
    Setup {
        h,
        user,
        agent,
        project,
        node,
    }
}

impl Setup {
    async fn assignments(&self) -> Value {
        self.assignments_of(self.node).await
    }

    /// `node`'s assignment list, answered at once.
    async fn assignments_of(&self, node: i64) -> Value {
        self.h
            .ok(
                &self.agent,
                "GET",
                &format!("/v1/agent/nodes/{node}/assignments"),
                None,
                200,
            )
            .await
    }

    /// Submits a gang of `replicas` whole 8-GPU nodes; its id.
    async fn submit_gang(&self, replicas: u32) -> i64 {
        self.h
            .ok(
                &self.user,
                "POST",
                "/v1/jobs",
                Some(
                    json!({"project": self.project, "command": ["x"], "gpus_per_task": 8,
                            "replicas": replicas}),
                ),
                201,
            )
            .await["id"]
            .as_i64()
            .unwrap()
    }

    async fn report(&self, job: i64, fence: i64, exit: Option<i64>) -> (u16, Value) {
        let (s, v) = self
            .h
            .call(
                Some(&self.agent),
                "POST",
                &format!("/v1/agent/nodes/{}/reports", self.node),
                Some(json!({"job": job, "fence": fence, "task": 0, "exit_code": exit})),
            )
            .await;
        (s.as_u16(), v)
    }
}

async fn runs_to_success(h: Harness) {
    let mut s = setup(h).await;
    let job = s.h.submit(&s.user, s.project, 4).await;
    assert_eq!(s.h.job_state(job).await, "queued");
    s.h.step().await;
    assert_eq!(s.h.job_state(job).await, "running");
    let a = s.assignments().await;
    let task = &a["assignments"][0];
    assert_eq!(task["job"].as_i64(), Some(job));
    assert_eq!(task["action"], "run");
    assert_eq!(task["gpus"].as_array().unwrap().len(), 4);
    assert_eq!(task["command"], json!(["python", "train.py"]));
    assert_eq!(s.report(job, 1, None).await.0, 200);
    let (code, _) =
        s.h.call(
            Some(&s.agent),
            "POST",
            &format!("/v1/agent/nodes/{}/logs", s.node),
            Some(json!({"job": job, "fence": 1, "task": 0, "data": "step 1\n"})),
        )
        .await;
    assert_eq!(code.as_u16(), 204);
    let (code, v) = s.report(job, 1, Some(0)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "succeeded");
    s.h.step().await;
    let detail =
        s.h.ok(&s.user, "GET", &format!("/v1/jobs/{job}"), None, 200)
            .await;
    assert_eq!(detail["job"]["state"], "succeeded");
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["submitted", "started", "finished"]);
    let logs =
        s.h.ok(&s.user, "GET", &format!("/v1/jobs/{job}/logs"), None, 200)
            .await;
    assert_eq!(logs[0]["data"], "step 1\n");
    // The GPUs are free again: a job for the whole node starts.
    let big = s.h.submit(&s.user, s.project, 8).await;
    s.h.step().await;
    assert_eq!(s.h.job_state(big).await, "running");
}

async fn lost_node_requeues_and_fences(h: Harness) {
    let mut s = setup(h).await;
    let job = s.h.submit(&s.user, s.project, 8).await;
    s.h.step().await;
    assert_eq!(s.report(job, 1, None).await.0, 200);
    // The node falls silent past the timeout; a second node is alive.
    let (_, agent2) = s.h.user("agent-2", "agent", None, &[]).await;
    let node2 = s.h.node(&agent2, "gpu-002").await;
    let lost =
        s.h.store
            .mark_lost_nodes(s.h.clock.now_ms() + 1, s.h.clock.now_ms())
            .await
            .unwrap();
    assert!(lost.contains(&s.node));
    // node2 was also marked (its heartbeat is older than the cutoff): bring it back.
    s.h.ok(
        &agent2,
        "POST",
        &format!("/v1/agent/nodes/{node2}/heartbeat"),
        None,
        200,
    )
    .await;
    s.h.step().await;
    s.h.step().await;
    let detail =
        s.h.ok(&s.user, "GET", &format!("/v1/jobs/{job}"), None, 200)
            .await;
    assert_eq!(detail["job"]["state"], "running", "{detail}");
    assert_eq!(detail["attempts"][0]["state"], "node_lost");
    assert_eq!(detail["attempts"][1]["fence"], 2);
    assert_eq!(
        detail["attempts"][1]["tasks"][0]["node"].as_i64(),
        Some(node2)
    );
    // The first agent comes back with a stale report: refused, naming the fence.
    let (code, v) = s.report(job, 1, Some(0)).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["field"], "fence");
    assert_eq!(s.h.job_state(job).await, "running");
}

async fn cancel_and_time_limit(h: Harness) {
    let mut s = setup(h).await;
    let queued_forever = s.submit_gang(2).await;
    s.h.step().await;
    // Two full nodes never fit a one-node fleet: the engine refuses it with its reason.
    let detail =
        s.h.ok(
            &s.user,
            "GET",
            &format!("/v1/jobs/{queued_forever}"),
            None,
            200,
        )
        .await;
    assert_eq!(detail["job"]["state"], "failed");
    assert!(
        detail["job"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("replicas:")
    );

    // The 2-GPU job starts first and the 8-GPU one then cannot fit (submitted together, the
    // whole-node job would go first: docs/scheduling.md, long whole-node work first).
    let job = s.h.submit(&s.user, s.project, 2).await;
    s.h.step().await;
    let queued = s.h.submit(&s.user, s.project, 8).await;
    s.h.step().await;
    let v =
        s.h.ok(
            &s.user,
            "POST",
            &format!("/v1/jobs/{queued}/cancel"),
            None,
            200,
        )
        .await;
    assert_eq!(v["state"], "cancelled");
    let v =
        s.h.ok(
            &s.user,
            "POST",
            &format!("/v1/jobs/{job}/cancel"),
            None,
            200,
        )
        .await;
    assert_eq!(v["state"], "stopping");
    let a = s.assignments().await;
    assert_eq!(a["assignments"][0]["action"], "stop");
    assert_eq!(a["assignments"][0]["stop_reason"], "cancel");
    s.report(job, 1, Some(143)).await;
    assert_eq!(s.h.job_state(job).await, "cancelled");
    let (code, v) =
        s.h.call(
            Some(&s.user),
            "POST",
            &format!("/v1/jobs/{job}/cancel"),
            None,
        )
        .await;
    assert_eq!(code.as_u16(), 409, "{v}");

    let limited =
        s.h.ok(
            &s.user,
            "POST",
            "/v1/jobs",
            Some(
                json!({"project": s.project, "command": ["x"], "gpus_per_task": 1,
                        "time_limit_s": 1}),
            ),
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap();
    s.h.step().await;
    assert_eq!(s.h.job_state(limited).await, "running");
    // A job runs its whole limit; the controller's next look at the time limits (every half
    // second) stops it.
    s.h.clock.advance(std::time::Duration::from_millis(1_000));
    s.h.step().await;
    assert_eq!(s.h.job_state(limited).await, "running");
    s.h.clock.advance(std::time::Duration::from_millis(500));
    s.h.step().await;
    let a = s.assignments().await;
    assert_eq!(a["assignments"][0]["stop_reason"], "time_limit");
    s.report(limited, 1, Some(137)).await;
    assert_eq!(s.h.job_state(limited).await, "timed_out");
}

async fn preemption_gives_the_guarantee_back(h: Harness) {
    let mut s = setup(h).await;
    let org = s.h.org("snu").await;
    let owner =
        s.h.ok(
            &s.h.admin,
            "POST",
            "/v1/projects",
            Some(json!({"org": org, "name": "guaranteed",
                        "quotas": [{"gpu_model": "H200", "guaranteed_milli": 8000}]})),
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap();
    s.h.step().await;
    let borrower = s.h.submit(&s.user, s.project, 8).await;
    s.h.step().await;
    assert_eq!(s.h.job_state(borrower).await, "running");
    s.report(borrower, 1, None).await;
    let claim = s.h.submit(&s.h.admin, owner, 8).await;
    s.h.step().await;
    let a = s.assignments().await;
    assert_eq!(a["assignments"][0]["stop_reason"], "preempt", "{a}");
    s.report(borrower, 1, Some(143)).await;
    assert_eq!(s.h.job_state(borrower).await, "queued");
    s.h.step().await;
    assert_eq!(s.h.job_state(claim).await, "running");
}

async fn bad_input_is_4xx_naming_the_field(h: Harness) {
    let s = setup(h).await;
    let t = Some(s.user.as_str());
    // (method, path, body, status, field the error names)
    type Case = (
        &'static str,
        &'static str,
        Option<Vec<u8>>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("POST", "/v1/jobs", Some(b"{not json".to_vec()), 400, "body"),
        ("POST", "/v1/jobs", Some(b"[]".to_vec()), 400, "body"),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1}"#.to_vec()),
            400,
            "command",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1,"command":["x"],"gpus":2}"#.to_vec()),
            400,
            "gpus",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":"one","command":["x"]}"#.to_vec()),
            400,
            "project",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":-5,"command":["x"],"gpus_per_task":1}"#.to_vec()),
            400,
            "project",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1,"command":[],"gpus_per_task":1}"#.to_vec()),
            400,
            "command",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1,"command":["x"],"gpus_per_task":1,"replicas":0}"#.to_vec()),
            400,
            "replicas",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1,"command":["x"],"gpus_per_task":99999999999}"#.to_vec()),
            400,
            "gpus_per_task",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1,"command":["x"],"gpu_fraction_milli":1500}"#.to_vec()),
            400,
            "gpu_fraction",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(br#"{"project":1,"command":["x"],"gpus_per_task":1,"priority":"now"}"#.to_vec()),
            400,
            "priority",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(
                br#"{"project":1,"command":["x"],"gpus_per_task":1,"time_limit_s":99999999999}"#
                    .to_vec(),
            ),
            400,
            "time_limit_s",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(
                br#"{"project":1,"command":["x"],"gpus_per_task":1,"gpu_models":["a b"]}"#.to_vec(),
            ),
            400,
            "gpu_models[0]",
        ),
        ("GET", "/v1/jobs/abc", None, 400, "id"),
        ("GET", "/v1/jobs/0", None, 400, "id"),
        ("GET", "/v1/jobs/99999999999999999999", None, 400, "id"),
        ("GET", "/v1/jobs?limit=0", None, 400, "limit"),
        ("GET", "/v1/jobs?state=lost", None, 400, "state"),
        ("GET", "/v1/jobs?bogus=1", None, 400, "bogus"),
        ("GET", "/v1/jobs?limit=x", None, 400, "query"),
    ];
    for (method, path, body, want, field) in cases {
        let (code, v) = s.h.call_raw(t, method, path, body).await;
        assert_eq!(code.as_u16(), want, "{method} {path}: {v}");
        let got = v["error"]["field"].as_str().unwrap_or_default();
        assert!(
            got.starts_with(field),
            "{method} {path}: field {got}, want {field}: {v}"
        );
    }
    let huge = vec![b'x'; haneul_server::BODY_LIMIT + 1];
    let (code, v) = s.h.call_raw(t, "POST", "/v1/jobs", Some(huge)).await;
    assert_eq!(code.as_u16(), 413, "{v}");
    let (code, v) = s.h.call(t, "GET", "/v1/nowhere", None).await;
    assert_eq!(code.as_u16(), 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (code, _) = s.h.call(Some("hn_wrong"), "GET", "/v1/whoami", None).await;
    assert_eq!(code.as_u16(), 401);
    // A node that cannot exist.
    let (code, v) =
        s.h.call(
            Some(&s.agent),
            "POST",
            "/v1/agent/register",
            Some(
                json!({"name": "n", "gpu_model": "H200", "gpus": 8, "nvlink_domain": 16,
                          "cpu_milli": 1, "memory_mib": 1}),
            ),
        )
        .await;
    assert_eq!(code.as_u16(), 400);
    assert_eq!(v["error"]["field"], "nvlink_domain");
}

async fn long_poll_wakes_on_new_work(h: Harness) {
    let mut s = setup(h).await;
    let first = s.assignments().await;
    let etag = first["etag"].as_str().unwrap().to_string();
    let t0 = std::time::Instant::now();
    let poll = held_poll(&s, s.node, &etag);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!poll.is_finished(), "an unchanged list is held");
    let job = s.h.submit(&s.user, s.project, 1).await;
    s.h.step().await;
    let (v, answered) = poll.await.unwrap();
    // Well inside the poll's 20 s, however loaded the machine: the new work woke it.
    assert!(answered - t0 < std::time::Duration::from_secs(15));
    assert_ne!(v["etag"].as_str().unwrap(), etag);
    assert_eq!(v["assignments"][0]["job"].as_i64(), Some(job));
}

/// Holds a long poll of `node` from `etag` for up to 20 s, answered in the background.
fn held_poll(
    s: &Setup,
    node: i64,
    etag: &str,
) -> tokio::task::JoinHandle<(Value, std::time::Instant)> {
    held_poll_for(s, node, etag, 20_000)
}

fn held_poll_for(
    s: &Setup,
    node: i64,
    etag: &str,
    wait_ms: u64,
) -> tokio::task::JoinHandle<(Value, std::time::Instant)> {
    let path = format!("/v1/agent/nodes/{node}/assignments?etag={etag}&wait_ms={wait_ms}");
    let (app, agent) = (s.h.app.clone(), s.agent.clone());
    tokio::spawn(async move {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {agent}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            std::time::Instant::now(),
        )
    })
}

/// A list too large to keep through the wait (here a long command; a gang's peers alike) is
/// read again when the wait ends: the node still gets its whole, unchanged list.
async fn a_large_unchanged_list_is_answered_whole_at_the_wait_end(h: Harness) {
    let mut s = setup(h).await;
    let long = "x".repeat(20_000);
    let job =
        s.h.ok(
            &s.user,
            "POST",
            "/v1/jobs",
            Some(json!({"project": s.project, "command": ["echo", long], "gpus_per_task": 1})),
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap();
    s.h.step().await;
    let first = s.assignments().await;
    assert_eq!(first["assignments"][0]["job"].as_i64(), Some(job));
    let etag = first["etag"].as_str().unwrap().to_string();
    let t0 = std::time::Instant::now();
    let (v, answered) = held_poll_for(&s, s.node, &etag, 700).await.unwrap();
    assert!(
        answered - t0 >= std::time::Duration::from_millis(700),
        "held for its wait"
    );
    assert_eq!(v["etag"].as_str(), Some(etag.as_str()));
    assert_eq!(v["assignments"], first["assignments"]);
    assert_eq!(
        v["assignments"][0]["command"][1].as_str(),
        Some(long.as_str())
    );
}

/// A node polls again the moment it is answered: that poll holds the list just read without
/// reading it again, and is still woken by a signalled change. A change made without a signal
/// (here straight in the store) is then seen at the wait's end, so never later than one wait.
async fn a_repoll_holds_the_list_just_read_unread(h: Harness) {
    let mut s = setup(h).await;
    let job = s.h.submit(&s.user, s.project, 1).await;
    s.h.step().await;
    let first = s.assignments().await;
    assert_eq!(first["assignments"][0]["action"], "run");
    let etag = first["etag"].as_str().unwrap().to_string();
    let metrics = s.h.state.metrics.clone();
    let (reads, skipped) = (metrics.poll_reads.get(), metrics.poll_reads_skipped.get());
    // Signalled: the job's cancel wakes the held re-poll, which reads and answers the stop.
    let poll = held_poll(&s, s.node, &etag);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!poll.is_finished(), "an unchanged list is held");
    assert_eq!(metrics.poll_reads_skipped.get(), skipped + 1);
    assert_eq!(metrics.poll_reads.get(), reads, "held without a read");
    let t0 = std::time::Instant::now();
    let cancel = format!("/v1/jobs/{job}/cancel");
    s.h.ok(&s.user, "POST", &cancel, None, 200).await;
    s.h.step().await;
    let (stopping, answered) = poll.await.unwrap();
    assert!(answered - t0 < std::time::Duration::from_secs(15));
    assert_eq!(stopping["assignments"][0]["action"], "stop");
    assert_eq!(metrics.poll_reads.get(), reads + 1);
    // Unsignalled: the task's exit written straight into the store wakes nobody; the re-poll
    // that skipped its read reads at its wait's end and answers the new list.
    let etag = stopping["etag"].as_str().unwrap().to_string();
    let t0 = std::time::Instant::now();
    let poll = held_poll_for(&s, s.node, &etag, 700);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(metrics.poll_reads_skipped.get(), skipped + 2);
    let attempt = s.h.store.list_attempts(job).await.unwrap()[0].clone();
    s.h.store
        .report_task(
            haneul_store::TaskReport {
                job,
                fence: attempt.fence,
                task: 0,
                node: s.node,
                exit_code: Some(143),
            },
            s.h.clock.now_ms(),
        )
        .await
        .unwrap();
    let (v, answered) = poll.await.unwrap();
    assert!(answered - t0 >= std::time::Duration::from_millis(700));
    assert_ne!(v["etag"].as_str(), Some(etag.as_str()));
    assert_eq!(v["assignments"].as_array().unwrap().len(), 0);
}

/// A gang's exit reports wake only the reporting node's poll: the task left that node's list
/// and no other. Its last report ends the attempt, which changes no other node's list either,
/// so a whole-fleet gang's end is not 1,250 polls reading again at once.
async fn an_exit_wakes_only_its_own_nodes_poll(h: Harness) {
    let mut s = setup(h).await;
    let other = s.h.node(&s.agent, "gpu-002").await;
    let job = s.submit_gang(2).await;
    s.h.step().await;
    let report = |node: i64, task: i64, fence: i64, exit: Option<i64>| {
        let h = &s.h;
        let agent = s.agent.clone();
        async move {
            h.ok(
                &agent,
                "POST",
                &format!("/v1/agent/nodes/{node}/reports"),
                Some(json!({"job": job, "fence": fence, "task": task, "exit_code": exit})),
                200,
            )
            .await
        }
    };
    let etag_of = |v: &Value| v["etag"].as_str().unwrap().to_string();
    let (a, b) = (
        s.assignments_of(s.node).await,
        s.assignments_of(other).await,
    );
    let task_of = |v: &Value| v["assignments"][0]["task"].as_i64().unwrap();
    let fence = a["assignments"][0]["fence"].as_i64().unwrap();
    let (ta, tb) = (task_of(&a), task_of(&b));
    report(s.node, ta, fence, None).await;
    report(other, tb, fence, None).await;
    let (a, b) = (
        s.assignments_of(s.node).await,
        s.assignments_of(other).await,
    );
    let poll_a = held_poll(&s, s.node, &etag_of(&a));
    let poll_b = held_poll(&s, other, &etag_of(&b));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!poll_a.is_finished() && !poll_b.is_finished());
    let t0 = std::time::Instant::now();
    report(s.node, ta, fence, Some(0)).await;
    let (v, answered) = poll_a.await.unwrap();
    assert!(answered - t0 < std::time::Duration::from_secs(15));
    assert_eq!(v["assignments"].as_array().unwrap().len(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !poll_b.is_finished(),
        "the other rank's list did not change: its poll is held"
    );
    // The last exit ends the attempt: its own node hears of it, the first node does not.
    let empty = etag_of(&v);
    let poll_a = held_poll(&s, s.node, &empty);
    let t0 = std::time::Instant::now();
    let ended = report(other, tb, fence, Some(0)).await;
    assert_eq!(ended["state"], "succeeded");
    let (v, answered) = poll_b.await.unwrap();
    assert!(answered - t0 < std::time::Duration::from_secs(15));
    assert_eq!(v["assignments"].as_array().unwrap().len(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !poll_a.is_finished(),
        "an attempt ending changes no list of a node whose task had already exited"
    );
    poll_a.abort();
}

async fn a_stop_wakes_only_its_nodes_poll(h: Harness) {
    let mut s = setup(h).await;
    let other = s.h.node(&s.agent, "gpu-002").await;
    let job = s.h.submit(&s.user, s.project, 8).await;
    s.h.step().await;
    let etag_of = |v: &Value| v["etag"].as_str().unwrap().to_string();
    let (a, b) = (
        s.assignments_of(s.node).await,
        s.assignments_of(other).await,
    );
    // The whole-node job is on one of the two nodes; the other has nothing.
    let (busy, idle, busy_list, idle_list) = if a["assignments"][0]["job"].as_i64() == Some(job) {
        (s.node, other, a, b)
    } else {
        (other, s.node, b, a)
    };
    assert_eq!(busy_list["assignments"][0]["job"].as_i64(), Some(job));
    assert_eq!(idle_list["assignments"].as_array().unwrap().len(), 0);
    let busy_poll = held_poll(&s, busy, &etag_of(&busy_list));
    let idle_poll = held_poll(&s, idle, &etag_of(&idle_list));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!busy_poll.is_finished() && !idle_poll.is_finished());
    let t0 = std::time::Instant::now();
    s.h.ok(
        &s.user,
        "POST",
        &format!("/v1/jobs/{job}/cancel"),
        None,
        200,
    )
    .await;
    // The controller, catching up on the stop, tells the job's node.
    s.h.step().await;
    let (v, answered) = busy_poll.await.unwrap();
    assert!(answered - t0 < std::time::Duration::from_secs(15));
    assert_eq!(v["assignments"][0]["action"], "stop");
    assert_eq!(v["assignments"][0]["stop_reason"], "cancel");
    // Nothing of the other node's changed: its poll is still held.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !idle_poll.is_finished(),
        "an unchanged list is held while another node's job stops"
    );
    idle_poll.abort();
}

async fn metrics_cover_queues_gpus_passes_and_latency(h: Harness) {
    let mut s = setup(h).await;
    s.h.submit(&s.user, s.project, 8).await;
    s.h.submit(&s.user, s.project, 8).await;
    s.h.step().await;
    let (code, _) = s.h.call(None, "GET", "/metrics", None).await;
    assert_eq!(code.as_u16(), 200);
    let req = axum::http::Request::builder()
        .uri("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    use tower::ServiceExt;
    let resp = s.h.app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let p = s.project;
    for want in [
        format!("haneul_queue_length{{project=\"{p}\"}} 1"),
        "haneul_gpus_allocated{gpu_model=\"H200\",pool=\"1\"} 8".to_string(),
        "haneul_schedule_pass_seconds_count".to_string(),
        "haneul_api_request_seconds_count{method=\"POST\",route=\"/v1/jobs\",status=\"201\"} 2"
            .to_string(),
    ] {
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }
}

async fn drain_and_future_models_without_rebuild_failures(h: Harness) {
    let mut s = setup(h).await;
    // A quota for a GPU model no node has yet must not stop the controller.
    let org = s.h.org("kisti").await;
    s.h.ok(
        &s.h.admin,
        "POST",
        "/v1/projects",
        Some(json!({"org": org, "name": "future",
                    "quotas": [{"gpu_model": "B200", "guaranteed_milli": 8000}]})),
        201,
    )
    .await;
    s.h.step().await;
    s.h.ok(
        &s.h.admin,
        "POST",
        &format!("/v1/nodes/{}/state", s.node),
        Some(json!({"state": "draining"})),
        200,
    )
    .await;
    let job = s.h.submit(&s.user, s.project, 1).await;
    s.h.step().await;
    assert_eq!(
        s.h.job_state(job).await,
        "queued",
        "a draining node takes no new work"
    );
    s.h.ok(
        &s.h.admin,
        "POST",
        &format!("/v1/nodes/{}/state", s.node),
        Some(json!({"state": "up"})),
        200,
    )
    .await;
    s.h.step().await;
    assert_eq!(s.h.job_state(job).await, "running");
}

async fn openapi_describes_every_route(h: Harness) {
    let (code, v) = h.call(None, "GET", "/openapi.json", None).await;
    assert_eq!(code.as_u16(), 200);
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/logs",
        "/v1/orgs",
        "/v1/projects",
        "/v1/users",
        "/v1/tokens",
        "/v1/tokens/{id}",
        "/v1/pools",
        "/v1/nodes",
        "/v1/nodes/{id}/state",
        "/v1/fleet/summary",
        "/v1/awards",
        "/v1/usage",
        "/v1/usage/series",
        "/v1/audit",
        "/v1/agent/register",
        "/v1/agent/nodes/{id}/heartbeat",
        "/v1/agent/nodes/{id}/assignments",
        "/v1/agent/nodes/{id}/reports",
        "/v1/agent/nodes/{id}/logs",
        "/v1/auth/oidc",
        "/v1/auth/oidc/token",
        "/v1/users/{id}/approve",
    ] {
        assert!(paths.contains_key(p), "{p} missing from /openapi.json");
    }
    assert!(paths["/v1/users/{id}/approve"]["post"].is_object());
    assert!(paths["/v1/auth/oidc/token"]["post"].is_object());
    let user_params = paths["/v1/users"]["get"]["parameters"].as_array().unwrap();
    assert!(
        user_params
            .iter()
            .any(|p| p["name"] == "pending" && p["in"] == "query"),
        "{user_params:?}"
    );
    // Declared through the OpenAPI router, the OIDC routes still answer.
    let (code, issuers) = h.call(None, "GET", "/v1/auth/oidc", None).await;
    assert_eq!((code.as_u16(), issuers), (200, serde_json::json!([])));
    assert!(v["components"]["securitySchemes"]["token"].is_object());
    assert!(v["components"]["schemas"]["JobSubmit"].is_object());
    let (code, _) = h.call(None, "GET", "/docs", None).await;
    assert_eq!(code.as_u16(), 200);
    let (code, _) = h.call(None, "GET", "/metrics", None).await;
    assert_eq!(code.as_u16(), 200);
}

/// What a generated client relies on: parameters where they are sent (path or query), ids
/// that start at 1, closed sets as enums, formats as patterns, an error body for every refusal,
/// and the `Idempotency-Key` header on the creating POSTs that honour it.
#[tokio::test]
async fn openapi_tells_the_truth() {
    let h = Harness::sqlite().await;
    let (_, v) = h.call(None, "GET", "/openapi.json", None).await;
    let mut creating_with_key = Vec::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut in_path = Vec::new();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => {
                        assert!(
                            path.contains(&format!("{{{name}}}")),
                            "{at}: {name} is no path parameter"
                        );
                        if p["schema"]["type"] == "integer" {
                            assert_eq!(p["schema"]["minimum"], 1, "{at}: {name} lacks minimum 1");
                        }
                        in_path.push(name.to_string());
                    }
                    "header" if name == "Idempotency-Key" => {
                        assert_eq!(method, "post", "{at}");
                        assert_eq!(p["schema"]["maxLength"], 255, "{at}");
                        creating_with_key.push(path.clone());
                    }
                    "query" | "header" => {}
                    other => panic!("{at}: {name} in {other}"),
                }
            }
            let templated = path.matches('{').count();
            assert_eq!(
                in_path.len(),
                templated,
                "{at}: path parameters {in_path:?}"
            );
            if !op["security"].is_null() {
                assert_eq!(
                    op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{at}: refusals have no error body"
                );
            }
        }
    }
    for p in [
        "/v1/jobs",
        "/v1/orgs",
        "/v1/projects",
        "/v1/users",
        "/v1/pools",
        "/v1/awards",
    ] {
        assert!(
            creating_with_key.iter().any(|c| c == p),
            "POST {p} lacks Idempotency-Key"
        );
    }
    let schemas = &v["components"]["schemas"];
    let enum_of = |name: &str| -> Vec<String> {
        schemas[name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is no enum: {}", schemas[name]))
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect()
    };
    assert!(enum_of("JobStateName").contains(&"running".to_string()));
    assert!(enum_of("Role").len() > 2);
    assert!(!enum_of("PriorityName").is_empty());
    assert!(!enum_of("LendingName").is_empty());
    let text = v.to_string();
    assert!(
        text.contains(r#""pattern":"^[A-Z]{2}$""#),
        "no country pattern"
    );
    assert!(
        text.contains(r#""pattern":"^[0-9]{4}-(0[1-9]|1[0-2])$""#),
        "no month pattern"
    );
}

macro_rules! both {
    ($($name:ident),+) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Harness::sqlite().await).await })+
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Harness::postgres().await).await })+
        }
    };
}

both!(
    runs_to_success,
    lost_node_requeues_and_fences,
    cancel_and_time_limit,
    preemption_gives_the_guarantee_back,
    bad_input_is_4xx_naming_the_field,
    long_poll_wakes_on_new_work,
    a_large_unchanged_list_is_answered_whole_at_the_wait_end,
    an_exit_wakes_only_its_own_nodes_poll,
    a_repoll_holds_the_list_just_read_unread,
    a_stop_wakes_only_its_nodes_poll,
    metrics_cover_queues_gpus_passes_and_latency,
    drain_and_future_models_without_rebuild_failures,
    openapi_describes_every_route
);
