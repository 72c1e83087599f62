//! The award, call and organisation commands against the real binary: a refused registration
//! with the rule named (and on the audit log), and a call run end to end from the command line
//! to `haneul usage --json` and a CSV statement.

mod common;

use common::Server;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn haneul(server: &Server, token: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(args)
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .arg("--token-file")
        .arg(token)
        .env("HANEUL_CONFIG", server.data_dir.join("no-config.toml"))
        .env_remove("HANEUL_SERVER")
        .env_remove("HANEUL_TOKEN")
        .output()
        .expect("run haneul")
}

fn json(server: &Server, token: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = haneul(server, token, &all);
    assert!(
        out.status.success(),
        "haneul {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("haneul {args:?}: {e}"))
}

#[test]
fn org_screening_and_a_call_from_the_command_line() {
    let dir = common::tempdir();
    let server = Server::start(dir.path(), None, &[]);
    let admin = dir.path().join("admin.token");

    let refused = haneul(
        &server,
        &admin,
        &[
            "org",
            "create",
            "frontco",
            "--country",
            "KR",
            "--parent-country",
            "CN",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("rule restricted-parent-country"), "{err}");
    // The interface the issue names: `haneul audit --json` shows the refusal.
    let audit = json(&server, &admin, &["audit"]);
    let refusal = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "org.refuse")
        .expect("the refusal is on the audit log");
    assert_eq!(refusal["target"], "org-name/frontco");
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains("restricted-parent-country")
    );

    let org = json(
        &server,
        &admin,
        &["org", "create", "kaist", "--country", "KR"],
    );
    assert_eq!(org["verification"], "verified");
    let org_id = org["id"].as_i64().unwrap();
    let token = server.admin_token();
    let project = server.must(
        &token,
        "/v1/projects",
        serde_json::json!({"org": org_id, "name": "llm"}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let call = json(
        &server,
        &admin,
        &[
            "call",
            "create",
            "--programme",
            "national-ai",
            "--name",
            "2027-spring",
            "--gpu-model",
            "H200",
            "--capacity",
            "8",
            "--track",
            "name=small,max=4,days=90,org-cap=4,region=KR",
        ],
    );
    let call_id = call["id"].as_i64().unwrap().to_string();
    let app = json(
        &server,
        &admin,
        &[
            "application",
            "create",
            "--call",
            &call_id,
            "--project",
            &project.to_string(),
            "--track",
            "small",
            "--gpus",
            "4",
            "--days",
            "30",
            "--plan",
            "fine-tune",
        ],
    );
    let app_id = app["id"].as_i64().unwrap().to_string();
    json(
        &server,
        &admin,
        &["application", "score", &app_id, "--score", "8"],
    );
    let awarded = json(&server, &admin, &["call", "award", &call_id]);
    let award = awarded["awards"][0]["id"].as_i64().unwrap().to_string();
    json(
        &server,
        &admin,
        &[
            "award",
            "adjust",
            &award,
            "--gpu-hours=-80",
            "--reason",
            "phase one only",
        ],
    );

    let usage = json(&server, &admin, &["usage"]);
    let row = &usage[0];
    assert_eq!(row["project"].as_i64(), Some(project));
    assert_eq!(
        row["gpu_hours_granted"].as_f64(),
        Some(4.0 * 30.0 * 24.0 - 80.0)
    );
    assert_eq!(row["gpu_hours_used"].as_f64(), Some(0.0));
    assert_eq!(row["gpu_hours_left"].as_f64(), Some(2800.0));
    assert!(row["valid_until"].as_i64().unwrap() > 0);
    assert_eq!(row["state"], "active");

    let month = &haneul_server_date(row["valid_from"].as_i64().unwrap())[..7];
    let csv = haneul(&server, &admin, &["statement", "--month", month, "--csv"]);
    assert!(csv.status.success());
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("month,org,project,gpu_model"));
    let bad = haneul(&server, &admin, &["statement", "--month", "2026-1"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));

    // Awards by dates: each bound is a midnight in the centre's time zone (Seoul by default),
    // so December's award is exactly December's statement month.
    let p = project.to_string();
    let award_args = |window: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "award",
            "create",
            "--project",
            &p,
            "--gpu-model",
            "H200",
            "--gpu-hours",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(window.iter().map(|s| s.to_string()));
        a
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        json(&server, &admin, &args)
    };
    let december = haneul_server::calendar::Calendar::default()
        .month_bounds("2026-12")
        .unwrap();
    for window in [
        &["--from", "2026-12-01", "--until", "2027-01-01"][..],
        &["--from", "2026-12-01", "--days", "31"][..],
    ] {
        let a = run(&award_args(window));
        assert_eq!(
            (
                a["valid_from"].as_i64().unwrap(),
                a["valid_until"].as_i64().unwrap()
            ),
            december,
            "{window:?}: {a}"
        );
    }
    let args = award_args(&["--from", "2026-02-30", "--days", "3"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bad = haneul(&server, &admin, &args);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM-DD"));

    // Under a Korean locale the server's refusal comes in Korean, naming the same flag.
    let refused = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args([
            "award",
            "create",
            "--project",
            "987654",
            "--gpu-model",
            "H200",
        ])
        .args(["--gpu-hours", "10", "--days", "3", "--server"])
        .arg(format!("http://{}", server.addr))
        .arg("--token-file")
        .arg(&admin)
        .env("HANEUL_CONFIG", server.data_dir.join("no-config.toml"))
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "ko_KR.UTF-8")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.starts_with("오류: --project: 요청 값이 올바르지 않습니다"),
        "{err}"
    );
    assert!(err.contains("987654"), "{err}");
}

fn haneul_server_date(ms: i64) -> String {
    haneul_server::calendar::Calendar::from_env().date(ms)
}
