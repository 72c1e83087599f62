//! A bounded fuzz of the API's request bodies (the job-spec parser first): proptest builds
//! bodies from the real field names with values of every JSON type, out-of-range numbers,
//! odd strings, unknown fields and bytes that are not JSON at all, and sends them through the
//! real router over a real SQLite store. Whatever arrives, the answer is never a 5xx (nor a
//! panic); a 400 names the field at fault, which is one the body holds or one it lacks; and an
//! accepted job is there to read back, as submitted.

mod common;

use common::Harness;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u32::MAX as u64 + 1)),
        ".{0,40}".prop_map(Value::from),
        "[a-zA-Z0-9_-]{0,12}".prop_map(Value::from),
        Just(json!("\u{0}\u{7}\n")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A plausible value for a named field, or now and then anything at all.
fn field_value(plausible: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![24 => plausible, 1 => any_json()]
}

fn small_uint(max: u64) -> BoxedStrategy<Value> {
    prop_oneof![(0..=max).prop_map(Value::from), Just(json!(max + 1))].boxed()
}

fn command() -> BoxedStrategy<Value> {
    ("[a-z/]{1,10}", prop::collection::vec(".{0,12}", 0..4))
        .prop_map(|(p, mut rest)| {
            rest.insert(0, p);
            Value::from(rest)
        })
        .boxed()
}

fn words() -> BoxedStrategy<Value> {
    prop::collection::vec("[a-z0-9./=-]{0,10}", 0..4)
        .prop_map(Value::from)
        .boxed()
}

/// A body from `fields` (each present or not; `required` ones nearly always), sometimes with
/// an unknown field.
fn object(
    required: &'static [&'static str],
    fields: Vec<(&'static str, BoxedStrategy<Value>)>,
) -> impl Strategy<Value = Value> {
    let parts: Vec<_> = fields
        .into_iter()
        .map(|(name, s)| {
            // The first two fields (the required ones) are nearly always there.
            let present = if required.contains(&name) { 0.97 } else { 0.35 };
            prop::option::weighted(present, field_value(s)).prop_map(move |v| (name, v))
        })
        .collect();
    (
        parts,
        prop::option::weighted(0.05, ("[a-z_]{1,10}", any_json())),
    )
        .prop_map(|(parts, extra)| {
            let mut m = Map::new();
            for (name, v) in parts {
                if let Some(v) = v {
                    m.insert(name.to_string(), v);
                }
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

fn job_body(project: i64) -> impl Strategy<Value = Value> {
    object(
        &["project", "command"],
        vec![
            (
                "project",
                prop_oneof![Just(json!(project)), any::<i64>().prop_map(Value::from)].boxed(),
            ),
            ("name", "[a-z -]{0,20}".prop_map(Value::from).boxed()),
            ("command", prop_oneof![9 => command(), 1 => words()].boxed()),
            ("replicas", small_uint(8)),
            ("gpus_per_task", small_uint(9)),
            ("gpu_fraction_milli", small_uint(1000)),
            (
                "gpu_models",
                prop::collection::vec(
                    prop_oneof![Just("H200"), Just("A100"), Just(""), Just("h 2")],
                    0..3,
                )
                .prop_map(Value::from)
                .boxed(),
            ),
            ("cpu_milli_per_task", small_uint(200_000)),
            ("memory_mib_per_task", small_uint(4_000_000)),
            (
                "priority",
                prop_oneof![
                    Just("low"),
                    Just("normal"),
                    Just("high"),
                    Just("urgent"),
                    Just("top")
                ]
                .prop_map(Value::from)
                .boxed(),
            ),
            ("preemptible", any::<bool>().prop_map(Value::from).boxed()),
            (
                "grace_s",
                prop_oneof![small_uint(600), Just(json!(u64::MAX))].boxed(),
            ),
            (
                "time_limit_s",
                prop_oneof![small_uint(86_400), Just(json!(u64::MAX))].boxed(),
            ),
            (
                "runtime_estimate_s",
                prop_oneof![small_uint(86_400), Just(json!(u64::MAX))].boxed(),
            ),
        ],
    )
}

/// The fields a request type has, for checking that a 400 names one of them.
const JOB_FIELDS: &[&str] = &[
    "project",
    "name",
    "command",
    "replicas",
    "gpus_per_task",
    "gpu_fraction_milli",
    "gpu_models",
    "cpu_milli_per_task",
    "memory_mib_per_task",
    "priority",
    "preemptible",
    "grace_s",
    "time_limit_s",
    "runtime_estimate_s",
];

const ORG_FIELDS: &[&str] = &["name", "class", "country", "parent"];
const PROJECT_FIELDS: &[&str] = &["org", "name", "weight", "quotas"];
const REGISTER_FIELDS: &[&str] = &[
    "name",
    "pool",
    "block",
    "gpu_model",
    "gpus",
    "gpu_memory_mib",
    "nvlink_domain",
    "cpu_milli",
    "memory_mib",
];

/// Sends `body` and checks the answer's contract; returns the status and answer.
fn check_answer(
    rt: &tokio::runtime::Runtime,
    h: &Harness,
    token: &str,
    path: &str,
    body: Vec<u8>,
    fields: &[&str],
) -> Result<(u16, Value), TestCaseError> {
    let sent: Option<Value> = serde_json::from_slice(&body).ok();
    let raw = body.clone();
    let (status, v) = rt.block_on(h.call_raw(Some(token), "POST", path, Some(body)));
    let status = status.as_u16();
    prop_assert!(
        status < 500,
        "POST {path} answered {status}: {v} for {sent:?}"
    );
    if status == 400 || status == 409 {
        let field = v["error"]["field"].as_str().unwrap_or("");
        prop_assert!(
            !field.is_empty(),
            "a {status} without a field: {v} for {sent:?}"
        );
        let segments: Vec<&str> = field.split('.').collect();
        // A repeated name is a fault unless the body itself nests a key in one of that name.
        let nested_in_body = sent.as_ref().is_some_and(|body| {
            segments
                .iter()
                .try_fold(body, |at, key| at.get(*key))
                .is_some()
        });
        prop_assert!(
            nested_in_body || !segments.windows(2).any(|w| w[0] == w[1]),
            "`{field}` names one field twice: {v}"
        );
        let head = field.split(['.', '[']).next().unwrap_or("");
        match &sent {
            Some(Value::Object(m)) => prop_assert!(
                m.contains_key(head) || fields.contains(&head),
                "the field `{field}` is neither in the body nor of the request: {v} for {sent:?}"
            ),
            // Not JSON (cut short, say): the parser may still have met a field first.
            _ => prop_assert!(
                head == "body"
                    || fields.contains(&head)
                    || String::from_utf8_lossy(&raw).contains(&format!("\"{field}\"")),
                "`{field}` named for a body that is not an object: {v}"
            ),
        }
        prop_assert!(
            !v["error"]["message"].as_str().unwrap_or("").is_empty(),
            "no message: {v}"
        );
    }
    Ok((status, v))
}

struct World {
    rt: tokio::runtime::Runtime,
    h: Harness,
    project: i64,
    member: String,
    agent: String,
    node: i64,
}

fn world() -> World {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (h, project, member, agent, node) = rt.block_on(async {
        let h = Harness::sqlite().await;
        let org = h.org("fuzz").await;
        let project = h.project(org, "p").await;
        let (_, member) = h.user("m", "member", Some(org), &[project]).await;
        let (_, agent) = h.user("a", "agent", None, &[]).await;
        let node = h.node(&agent, "n1").await;
        (h, project, member, agent, node)
    });
    World {
        rt,
        h,
        project,
        member,
        agent,
        node,
    }
}

/// `cases` cases, after the failures saved in `fuzz.proptest-regressions` beside this file,
/// which every run replays first (and where a new failure is saved): a failure found once
/// stays a test.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..Config::default()
    })
}

#[test]
fn job_submissions_never_fail_on_our_side() {
    let w = world();
    let accepted = std::cell::Cell::new(0);
    runner(1000)
        .run(&job_body(w.project), |body| {
            let (status, v) = check_answer(
                &w.rt,
                &w.h,
                &w.member,
                "/v1/jobs",
                body.to_string().into_bytes(),
                JOB_FIELDS,
            )?;
            if status == 201 {
                // Accepted is durable and as submitted.
                let id = v["id"].as_i64().unwrap();
                let (s, got) = w.rt.block_on(w.h.call(
                    Some(&w.h.admin),
                    "GET",
                    &format!("/v1/jobs/{id}"),
                    None,
                ));
                prop_assert_eq!(s.as_u16(), 200);
                prop_assert_eq!(&got["job"]["command"], &body["command"]);
                accepted.set(accepted.get() + 1);
            } else {
                prop_assert!(
                    [400, 404].contains(&status),
                    "unexpected {status} for a job: {v} for {body}"
                );
            }
            Ok(())
        })
        .unwrap();
    // The strategy must reach the accepting path too, or the test proves little.
    let accepted = accepted.get();
    assert!(
        accepted > 10,
        "only {accepted} of 1000 bodies were accepted"
    );
}

#[test]
fn bodies_that_are_not_json_objects_are_refused_cleanly() {
    let w = world();
    let valid = json!({"project": w.project, "command": ["true"]}).to_string();
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (0..valid.len()).prop_map(move |n| valid.as_bytes()[..n].to_vec()),
        any_json().prop_map(|v| v.to_string().into_bytes()),
    ];
    runner(500)
        .run(&bytes, |body| {
            for (path, token, fields) in [
                ("/v1/jobs", &w.member, JOB_FIELDS),
                ("/v1/orgs", &w.h.admin, ORG_FIELDS),
                ("/v1/projects", &w.h.admin, PROJECT_FIELDS),
                ("/v1/agent/register", &w.agent, REGISTER_FIELDS),
            ] {
                check_answer(&w.rt, &w.h, token, path, body.clone(), fields)?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn other_request_bodies_never_fail_on_our_side() {
    let w = world();
    let register = object(
        &["name", "gpu_model", "gpus", "cpu_milli", "memory_mib"],
        vec![
            ("name", "[a-z0-9-]{0,12}".prop_map(Value::from).boxed()),
            ("pool", "[a-z]{0,8}".prop_map(Value::from).boxed()),
            ("block", "[a-z]{0,8}".prop_map(Value::from).boxed()),
            (
                "gpu_model",
                prop_oneof![Just("H200"), Just(""), Just("a b")]
                    .prop_map(Value::from)
                    .boxed(),
            ),
            (
                "gpus",
                prop_oneof![(-2i64..20).prop_map(Value::from)].boxed(),
            ),
            (
                "gpu_memory_mib",
                (-2i64..200_000).prop_map(Value::from).boxed(),
            ),
            ("nvlink_domain", (-1i64..10).prop_map(Value::from).boxed()),
            ("cpu_milli", (-1i64..200_000).prop_map(Value::from).boxed()),
            (
                "memory_mib",
                (-1i64..2_000_000).prop_map(Value::from).boxed(),
            ),
        ],
    );
    let report = object(
        &["job", "fence", "task"],
        vec![
            ("job", (-1i64..5).prop_map(Value::from).boxed()),
            ("fence", (-1i64..3).prop_map(Value::from).boxed()),
            ("task", (-1i64..3).prop_map(Value::from).boxed()),
            ("exit_code", (-300i64..300).prop_map(Value::from).boxed()),
        ],
    );
    let org = object(
        &["name", "country"],
        vec![
            ("name", "[a-z ]{0,10}".prop_map(Value::from).boxed()),
            (
                "class",
                prop_oneof![Just("academia"), Just("startup"), Just("x")]
                    .prop_map(Value::from)
                    .boxed(),
            ),
            ("country", "[A-Z]{0,3}".prop_map(Value::from).boxed()),
            ("parent", (-1i64..4).prop_map(Value::from).boxed()),
        ],
    );
    let project = object(
        &["org", "name"],
        vec![
            ("org", (-1i64..4).prop_map(Value::from).boxed()),
            ("name", "[a-z]{0,10}".prop_map(Value::from).boxed()),
            ("weight", (-1i64..10).prop_map(Value::from).boxed()),
            (
                "quotas",
                prop::collection::vec(
                    object(
                        &["gpu_model", "guaranteed_milli"],
                        vec![
                            (
                                "gpu_model",
                                prop_oneof![Just("H200"), Just("")]
                                    .prop_map(Value::from)
                                    .boxed(),
                            ),
                            ("guaranteed_milli", small_uint(100_000)),
                            ("borrow_limit_milli", small_uint(100_000)),
                        ],
                    ),
                    0..3,
                )
                .prop_map(Value::from)
                .boxed(),
            ),
        ],
    );
    let cases: Vec<(&str, &String, BoxedStrategy<Value>, &[&str])> = vec![
        (
            "/v1/agent/register",
            &w.agent,
            register.boxed(),
            REGISTER_FIELDS,
        ),
        (
            "report",
            &w.agent,
            report.boxed(),
            &["job", "fence", "task", "exit_code"],
        ),
        ("/v1/orgs", &w.h.admin, org.boxed(), ORG_FIELDS),
        ("/v1/projects", &w.h.admin, project.boxed(), PROJECT_FIELDS),
    ];
    let report_path = format!("/v1/agent/nodes/{}/reports", w.node);
    for (path, token, strategy, fields) in cases {
        let path = if path == "report" {
            report_path.as_str()
        } else {
            path
        };
        runner(250)
            .run(&strategy, |body| {
                check_answer(
                    &w.rt,
                    &w.h,
                    token,
                    path,
                    body.to_string().into_bytes(),
                    fields,
                )?;
                Ok(())
            })
            .unwrap();
    }
}
