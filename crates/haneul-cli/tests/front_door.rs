//! `haneul`, the small binary users type, against `haneul-full`: it answers its quick commands
//! itself, hands everything else over with the same output and exit status, and says what is
//! missing when `haneul-full` is not beside it.

mod common;

use common::{Server, members};
use std::path::Path;
use std::process::{Command, Output};

const FRONT: &str = env!("CARGO_BIN_EXE_haneul");
const FULL: &str = env!("CARGO_BIN_EXE_haneul-full");

fn run(binary: &Path, args: &[&str]) -> Output {
    let mut tries = 0;
    loop {
        let out = Command::new(binary)
            .args(args)
            .env("NO_COLOR", "1")
            .env("LANG", "C")
            .env_remove("HANEUL_CONFIG")
            .env("HOME", "/nonexistent")
            .output();
        match out {
            // A copy just written is busy while a process another test forked meanwhile still
            // holds the copy's descriptor, until that process's exec closes it.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            out => return out.unwrap(),
        }
    }
}

#[test]
fn every_other_command_is_handed_over_with_the_same_answer() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["sim", "--help"],
        &["award", "list", "--help"],
        &["no-such-command"],
        &["submit", "--no-such-flag"],
        &["queue", "--help"],
        &["completions", "bash"],
        &[],
    ] {
        let front = run(Path::new(FRONT), args);
        let full = run(Path::new(FULL), args);
        assert_eq!(front.status.code(), full.status.code(), "haneul {args:?}");
        // haneul-full names itself by its argv[0], which the hand-over keeps as `haneul`.
        assert_eq!(
            String::from_utf8_lossy(&front.stdout).replace("haneul-full", "haneul"),
            String::from_utf8_lossy(&full.stdout).replace("haneul-full", "haneul"),
            "haneul {args:?}: standard output"
        );
        assert_eq!(
            String::from_utf8_lossy(&front.stderr).replace("haneul-full", "haneul"),
            String::from_utf8_lossy(&full.stderr).replace("haneul-full", "haneul"),
            "haneul {args:?}: standard error"
        );
    }
}

#[test]
fn alone_it_still_submits_and_names_what_is_missing_for_the_rest() {
    let dir = common::tempdir();
    let server = Server::start(&dir.path().join("server"), None, &[]);
    let m = members(&server);
    let alone = dir.path().join("bin");
    std::fs::create_dir_all(&alone).unwrap();
    let haneul = alone.join("haneul");
    std::fs::copy(FRONT, &haneul).unwrap();
    let token_file = dir.path().join("user.token");
    std::fs::write(&token_file, &m.user).unwrap();
    let url = format!("http://{}", server.addr);
    let token = token_file.to_str().unwrap();
    let project = m.project.to_string();

    // The quick commands need nothing beside the binary.
    let submitted = run(
        &haneul,
        &[
            "submit",
            "--server",
            &url,
            "--token-file",
            token,
            "--project",
            &project,
            "--gpus",
            "1",
            "--json",
            "--",
            "true",
        ],
    );
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = job["id"].as_i64().expect("a job id");
    let shown = run(
        &haneul,
        &[
            "show",
            &id.to_string(),
            "--server",
            &url,
            "--token-file",
            token,
            "--json",
        ],
    );
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap()["id"],
        id
    );

    // Anything else needs haneul-full, and the error says so and how to get it.
    for args in [&["whoami", "--server", &url][..], &["up"], &["--help"]] {
        let out = run(&haneul, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "haneul {args:?}: {said}");
        assert!(
            said.contains("haneul-full") && said.contains("cargo build --release -p haneul-cli"),
            "haneul {args:?}: {said}"
        );
    }
}

/// What the front door is for: a start that costs a fraction of the whole binary's.
#[test]
fn the_front_door_is_a_fraction_of_the_whole_binary() {
    let front = std::fs::metadata(FRONT).unwrap().len();
    let full = std::fs::metadata(FULL).unwrap().len();
    assert!(
        front * 3 < full,
        "haneul is {front} bytes, haneul-full {full}: the server's code is linked into the front door"
    );
}
