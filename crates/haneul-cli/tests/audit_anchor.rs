//! Audit anchoring end to end: the real server signs the chain head into its checkpoint file;
//! `haneul audit verify --checkpoint` passes, then fails once the newest entries are deleted
//! under the server (by someone who owns the database but not the key), and fails on a
//! checkpoint file whose line was edited.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn verify(
    server: &Server,
    admin_file: &std::path::Path,
    checkpoints: &std::path::Path,
) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args([
            "audit",
            "verify",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .arg("--token-file")
        .arg(admin_file)
        .arg("--checkpoint")
        .arg(checkpoints)
        .env("HANEUL_CONFIG", "/nonexistent/haneul-config.toml")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Deletes the newest `n` audit entries as the database's owner can: triggers dropped first.
fn truncate(data: &std::path::Path, database: Option<&str>, n: i64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let delete = format!(
            "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit ORDER BY seq DESC LIMIT {n})"
        );
        match database {
            None => {
                let url = format!("sqlite://{}", data.join("haneul.db").display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                for s in ["DROP TRIGGER audit_no_delete", delete.as_str()] {
                    sqlx::query(s).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                for s in ["DROP TRIGGER audit_no_change ON audit", delete.as_str()] {
                    sqlx::query(s).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }
        }
    });
}

fn anchored(data: &std::path::Path, database: Option<&str>) {
    let mut server = Server::start(data, database, &["--audit-checkpoint-interval", "1"]);
    let admin = server.admin_token();
    for name in ["kaist", "snu", "postech"] {
        server.must(
            &admin,
            "/v1/orgs",
            json!({"name": name, "country": "KR"}),
            201,
        );
    }
    let entries = server.get(Some(&admin), "/v1/audit?limit=10000").1;
    let head = entries.as_array().unwrap().last().unwrap()["seq"]
        .as_i64()
        .unwrap();

    // The key is the server's alone.
    let key = data.join("audit.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let checkpoints = data.join("audit-checkpoints.jsonl");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&checkpoints).unwrap_or_default();
        if text.contains(&format!("\"seq\":{head},")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of entry {head}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin_file = data.join("admin.token");
    let (ok, text) = verify(&server, &admin_file, &checkpoints);
    assert!(ok, "{text}");
    assert!(text.contains("checkpoints hold"), "{text}");

    // An edited checkpoint line no longer verifies.
    let edited = data.join("edited.jsonl");
    let text = std::fs::read_to_string(&checkpoints).unwrap();
    std::fs::write(
        &edited,
        text.replace(
            &format!("\"seq\":{head},"),
            &format!("\"seq\":{},", head - 1),
        ),
    )
    .unwrap();
    let (ok, text) = verify(&server, &admin_file, &edited);
    assert!(!ok && text.contains("signature"), "{text}");

    // The newest two entries deleted under the server: the chain left is still a valid chain,
    // and only the checkpoint shows what is gone.
    server.kill9();
    truncate(data, database, 2);
    let server = Server::start(data, database, &[]);
    let intact = server.get(Some(&admin), "/v1/audit/verify");
    assert_eq!(intact.0, 200, "{}", intact.1);
    let (ok, text) = verify(&server, &admin_file, &checkpoints);
    assert!(!ok, "{text}");
    assert!(
        text.contains("truncated") && text.contains(&format!("entry {head}")),
        "{text}"
    );
}

#[test]
fn sqlite_checkpoints_detect_a_truncated_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    anchored(dir.path(), None);
}

#[test]
fn postgres_checkpoints_detect_a_truncated_audit_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    let dir = tempfile::tempdir().unwrap();
    anchored(dir.path(), Some(db.url()));
}
