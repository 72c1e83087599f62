//! End to end, with the real binary as root (as CI runs): tasks run as their owners' Unix ids
//! from the server, cannot read the server's secrets or another tenant's files (each attempt
//! fails with EACCES, not merely with no output), get limits though they asked for none, and
//! the server refuses uid 0 and an agent's uid.

mod common;

use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn start_agent(server: &Server, token_file: &Path, work: &Path, name: &str) -> Agent {
    let agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_haneul"))
            .args(["agent", "--name", name, "--simulate-gpus", "4xH200"])
            .args(["--pool", "h200", "--server"])
            .arg(format!("http://{}", server.addr))
            .arg("--token-file")
            .arg(token_file)
            .arg("--work-dir")
            .arg(work)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haneul agent"),
    );
    let admin = server.admin_token();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, nodes) = server.get(Some(&admin), "/v1/nodes");
        if nodes
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["name"] == name && n["state"] == "up")
        {
            return agent;
        }
        assert!(Instant::now() < until, "node {name} never came up: {nodes}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_done(server: &Server, token: &str, job: i64) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = server.get(Some(token), &format!("/v1/jobs/{job}"));
        let state = v["job"]["state"].as_str().unwrap_or("").to_string();
        if ["succeeded", "failed", "cancelled", "timed_out"].contains(&state.as_str()) {
            return v;
        }
        assert!(Instant::now() < until, "job {job} never ended: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logs(server: &Server, token: &str, job: i64) -> String {
    let (s, v) = server.get(Some(token), &format!("/v1/jobs/{job}/logs"));
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["data"].as_str().unwrap())
        .collect()
}

fn user_named(server: &Server, admin: &str, name: &str) -> Value {
    let (_, users) = server.get(Some(admin), "/v1/users");
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no user {name}: {users}"))
        .clone()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn task_dir(work: &Path, job: i64) -> PathBuf {
    work.join(format!("job-{job}/attempt-1/task-0"))
}

#[test]
fn jobs_run_as_their_owners_and_cannot_read_what_is_not_theirs() {
    assert!(
        is_root(),
        "this test checks what a root agent does: run it as root (CI does)"
    );
    let dir = common::tempdir();
    let server = Server::start(&dir.path().join("server"), None, &[]);
    let Members {
        admin,
        org,
        project,
        user,
        agent,
    } = members(&server);
    // A second tenant: another project and member of the same organisation.
    let other_project = server.must(
        &admin,
        "/v1/projects",
        json!({"org": org, "name": "vision"}),
        201,
    );
    let lee = server.user_token(
        &admin,
        "lee",
        "member",
        Some(org),
        &[other_project["id"].as_i64().unwrap()],
    );
    let agent_file = dir.path().join("agent.token");
    std::fs::write(&agent_file, format!("{agent}\n")).unwrap();
    std::fs::set_permissions(&agent_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let work = dir.path().join("work");
    let _agent = start_agent(&server, &agent_file, &work, "id-node");

    let kim = user_named(&server, &admin, "kim");
    let kim_uid = kim["uid"].as_i64().unwrap();
    let lee_uid = user_named(&server, &admin, "lee")["uid"].as_i64().unwrap();
    assert!(kim_uid >= 200_000 && lee_uid > kim_uid, "{kim}");
    let (_, p) = server.get(Some(&admin), &format!("/v1/projects/{project}"));
    let project_gid = p["gid"].as_i64().unwrap();
    assert!(project_gid >= 300_000, "{p}");

    // Lee's job leaves output in its directory.
    let lee_job = server.must(
        &lee,
        "/v1/jobs",
        json!({"project": other_project["id"], "gpus_per_task": 1,
               "command": ["sh", "-c", "echo lee-secret > notes.txt; echo done"]}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let v = wait_done(&server, &lee, lee_job);
    assert_eq!(v["job"]["state"], "succeeded", "{v}");

    let server_dir = dir.path().join("server").canonicalize().unwrap();
    let admin_token = server_dir.join("admin.token");
    let db = server_dir.join("haneul.db");
    let lee_dir = task_dir(&work, lee_job).canonicalize().unwrap();
    let targets = [
        admin_token.clone(),
        agent_file.canonicalize().unwrap(),
        db.clone(),
        lee_dir.join("notes.txt"),
        lee_dir.join("stdout.log"),
    ];
    let mut script = String::from(
        "echo UID=$(id -u); echo GID=$(id -g); echo GROUPS=$(id -G); echo USER=$USER; \
         echo HOME=$HOME; echo CGROUP=$(grep -E ':memory:' /proc/self/cgroup | cut -d: -f3); \
         echo DIRMODE=$(stat -c %a .); ls ",
    );
    script.push_str(&format!("{} 2>&1; ", lee_dir.display()));
    for t in &targets {
        script.push_str(&format!("cat {} 2>&1; ", t.display()));
    }
    script.push_str("echo end");
    // Kim's job asks for no CPU or memory.
    let kim_job = server.must(
        &user,
        "/v1/jobs",
        json!({"project": project, "gpus_per_task": 1, "command": ["sh", "-c", script]}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let v = wait_done(&server, &user, kim_job);
    let out = logs(&server, &user, kim_job);
    assert_eq!(v["job"]["state"], "succeeded", "{v}\n{out}");
    let var = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .to_string()
    };
    assert_eq!(var("UID"), kim_uid.to_string(), "{out}");
    assert_eq!(var("GID"), kim["gid"].to_string(), "{out}");
    assert!(
        var("GROUPS")
            .split(' ')
            .any(|g| g == project_gid.to_string()),
        "the project's group: {out}"
    );
    assert_eq!(var("USER"), "kim");
    assert_eq!(var("DIRMODE"), "700");
    // Every attempt fails with EACCES ("Permission denied"), not with a missing file.
    assert!(
        out.contains(&format!(
            "ls: cannot open directory '{}': Permission denied",
            lee_dir.display()
        )) || out.contains(&format!("ls: {}: Permission denied", lee_dir.display())),
        "{out}"
    );
    for t in &targets {
        assert!(
            out.contains(&format!("cat: {}: Permission denied", t.display())),
            "reading {} did not fail with EACCES:\n{out}",
            t.display()
        );
    }
    assert!(!out.contains("lee-secret"), "{out}");
    assert!(!out.contains("hn_"), "a token leaked: {out}");

    // Limits though the job asked for none: its share of the node by its GPUs (1 of 4),
    // in a cgroup of its own.
    let cgroup = var("CGROUP");
    assert!(
        cgroup.contains("haneul-tasks/id-node-") && cgroup.contains(&format!("-job-{kim_job}-1-0")),
        "not in a task cgroup: {out}"
    );
    let (_, nodes) = server.get(Some(&admin), "/v1/nodes");
    let node = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "id-node")
        .unwrap();
    assert_eq!(node["limits"], "cgroup-v1", "{node}");

    // File modes: the server's directory and files, the job's directory and output.
    assert_eq!(mode(&server_dir), 0o700);
    assert_eq!(mode(&admin_token), 0o600);
    assert_eq!(mode(&db), 0o600);
    for f in ["haneul.db-wal", "haneul.db-shm"] {
        let p = server_dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    let kim_dir = task_dir(&work, kim_job);
    assert_eq!(mode(&kim_dir), 0o700);
    assert_eq!(mode(&work), 0o711);
    assert_eq!(mode(kim_dir.parent().unwrap()), 0o711);
    let meta = std::fs::metadata(&kim_dir).unwrap();
    assert_eq!(i64::from(meta.uid()), kim_uid);
    for f in ["stdout.log", "stderr.log"] {
        let p = kim_dir.join(f);
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        assert_eq!(i64::from(std::fs::metadata(&p).unwrap().uid()), kim_uid);
    }
    assert_eq!(
        i64::from(std::fs::metadata(lee_dir.join("notes.txt")).unwrap().uid()),
        lee_uid
    );
}

#[test]
fn root_and_agent_uids_are_refused() {
    let dir = common::tempdir();
    let server = Server::start(&dir.path().join("server"), None, &[]);
    let Members {
        admin, org, agent, ..
    } = members(&server);
    let bad = |body: Value| -> (String, String) {
        let (s, v) = server.post(&admin, "/v1/users", body);
        assert_eq!(s, 400, "{v}");
        (
            v["error"]["field"].as_str().unwrap_or_default().to_string(),
            v.to_string(),
        )
    };
    let (field, v) = bad(json!({"name": "root0", "role": "member", "org": org, "uid": 0}));
    assert_eq!(field, "uid", "{v}");
    assert!(v.contains("root"), "{v}");
    let (field, v) = bad(json!({"name": "g0", "role": "member", "org": org, "gid": 0}));
    assert_eq!(field, "gid", "{v}");

    // An agent reports the uid it runs as; no user may then have it.
    let (s, v) = server.post(
        &agent,
        "/v1/agent/register",
        json!({"name": "n1", "pool": "h200", "gpu_model": "H200", "gpus": 1,
               "cpu_milli": 1000, "memory_mib": 1024, "uid": 4242}),
    );
    assert_eq!(s, 200, "{v}");
    let (field, v) = bad(json!({"name": "clash", "role": "member", "org": org, "uid": 4242}));
    assert_eq!(field, "uid", "{v}");
    assert!(v.contains("agent"), "{v}");

    // Operators choose ids; a taken uid is a conflict; update refuses 0 too.
    let u = server.must(
        &admin,
        "/v1/users",
        json!({"name": "park", "role": "member", "org": org, "uid": 250_000, "gid": 5000}),
        201,
    );
    assert_eq!(
        (u["uid"].as_i64(), u["gid"].as_i64()),
        (Some(250_000), Some(5000))
    );
    let (s, v) = server.post(
        &admin,
        "/v1/users",
        json!({"name": "park2", "role": "member", "org": org, "uid": 250_000}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(v.to_string().contains("park"), "{v}");
    let admin_file = dir.path().join("admin.token");
    std::fs::write(&admin_file, &admin).unwrap();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_haneul"))
            .arg(args[0])
            .arg(args[1])
            .arg("--server")
            .arg(format!("http://{}", server.addr))
            .arg("--token-file")
            .arg(&admin_file)
            .args(&args[2..])
            .env("HANEUL_CONFIG", dir.path().join("no-config"))
            .env("LANG", "C")
            .output()
            .unwrap()
    };
    let id = u["id"].to_string();
    let out = cli(&["user", "update", &id, "--uid", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("uid") && err.contains("root"),
        "{err}"
    );
    let out = cli(&["user", "update", &id, "--uid", "250001", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["uid"].as_i64(), v["gid"].as_i64()),
        (Some(250_001), Some(5000))
    );
    let out = cli(&[
        "user",
        "create",
        "--name",
        "choi",
        "--role",
        "member",
        "--org",
        &org.to_string(),
        "--uid",
        "0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("uid"), "{err}");
}
