//! The README's quick start ("A centre on one machine"), read from README.md and run as written,
//! so this test breaks when the README changes. Two things are swapped so that it never touches
//! the real home or a fixed port: the `target/release/haneul` path becomes the binary cargo
//! built, and the data directory `/tmp/haneul-demo` becomes a temporary one; the port comes from
//! HANEUL_LISTEN and the client config from HANEUL_CONFIG.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        // `sh -c` execs the last command, so this pid is `haneul up` itself.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// The commands of the first shell block under the heading, without comment lines.
fn quick_start(readme: &str) -> Vec<String> {
    let section = readme
        .split("## A centre on one machine")
        .nth(1)
        .expect("README.md has the section `A centre on one machine`");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has a ```sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// "hello from" followed by a GPU index.
fn says_hello_with_a_gpu(text: &str) -> bool {
    text.match_indices("hello from ").any(|(i, m)| {
        text[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn readme_quick_start_as_written() {
    let started = Instant::now();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let commands = quick_start(&readme);
    assert!(
        commands.len() >= 3,
        "the quick start has a build, `haneul up` and a client command: {commands:?}"
    );
    assert!(
        commands[0].starts_with("cargo build --release -p haneul-cli"),
        "the quick start begins with the build (done by cargo test): {}",
        commands[0]
    );
    assert!(
        commands[1].starts_with("target/release/haneul up"),
        "{}",
        commands[1]
    );
    assert!(
        commands.iter().any(|c| c.contains("haneul logs")),
        "the quick start reads a job's logs"
    );

    let dir = common::tempdir();
    let dir_path = dir.path().canonicalize().unwrap();
    let data = dir_path.join("data");
    let config = dir_path.join("config.toml");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let exe = env!("CARGO_BIN_EXE_haneul");
    let as_run = |line: &str| {
        line.replace("target/release/haneul", exe)
            .replace("/tmp/haneul-demo", data.to_str().unwrap())
    };
    let sh = |line: &str| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("exec {}", as_run(line)))
            .current_dir(&dir_path)
            .env("HANEUL_CONFIG", &config)
            .env("HANEUL_LISTEN", &listen)
            .env("RUST_LOG", "warn")
            .env_remove("HANEUL_SERVER")
            .env_remove("HANEUL_TOKEN")
            .env_remove("HANEUL_DATA_DIR");
        c
    };

    let up_out = dir_path.join("up.out");
    let mut up = Background(
        sh(&commands[1])
            .stdout(std::fs::File::create(&up_out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while !config.exists() {
        assert!(up.0.try_wait().unwrap().is_none(), "haneul up exited early");
        assert!(Instant::now() < until, "haneul up wrote no config");
        std::thread::sleep(Duration::from_millis(100));
    }
    let printed = std::fs::read_to_string(&up_out).unwrap();
    assert!(printed.contains(&format!("http://{listen}")), "{printed}");

    // "In another shell": each command once, in order; a human reads the logs some seconds
    // after submitting, so the logs command is retried until the job has written them.
    let mut transcript = String::new();
    for line in &commands[2..] {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out = sh(line).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "`{line}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !line.contains("haneul logs") || says_hello_with_a_gpu(&stdout) {
                transcript.push_str(&format!("$ {line}\n{stdout}"));
                break;
            }
            assert!(Instant::now() < until, "`{line}` printed: {stdout}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(says_hello_with_a_gpu(&transcript), "{transcript}");
    eprintln!("{transcript}");

    // The connection options and --json go before the command as well as after it, as with
    // Slurm's and kubectl's tools.
    for line in [
        "target/release/haneul --json queue",
        "target/release/haneul queue --json",
    ] {
        let out = sh(line).output().unwrap();
        assert!(
            out.status.success(),
            "`{line}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("`{line}` printed no JSON ({e})"));
    }
    let before = sh(&format!(
        "target/release/haneul --server http://{listen} --json show 1"
    ))
    .output()
    .unwrap();
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    // A reader that has gone (`| head`, here one that never reads) ends the command quietly:
    // no panic, no "broken pipe" message.
    let closed = sh(
        "target/release/haneul show 1 | true; target/release/haneul --json queue | true; \
         target/release/haneul completions bash | true",
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
        "a closed pipe made noise: {stderr}"
    );
    drop(up);
    eprintln!("README quick start took {:?}", started.elapsed());
}

#[test]
fn hello_check_needs_a_gpu_index() {
    assert!(says_hello_with_a_gpu("hello from 0\n"));
    assert!(!says_hello_with_a_gpu("hello from \n"));
    assert!(!says_hello_with_a_gpu("nothing"));
}
