//! The Debian package: built by `cargo deb` from the binary this test run built, installed with
//! dpkg into a throwaway root, and checked: its files and their modes, the systemd units
//! (`systemd-analyze verify`), and that the installed binary starts a server that answers.
//!
//! It needs `cargo deb` (`cargo install cargo-deb --locked`; scripts/test installs it).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `cargo-deb` from PATH or cargo's own bin directory; the test fails, naming the install
/// command, without it (scripts/test installs it).
fn cargo_deb() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v cargo-deb"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let exe = home.map(|h| h.join("bin/cargo-deb"));
    match exe {
        Some(exe) if exe.exists() => exe,
        _ => panic!(
            "the package test needs cargo-deb: `cargo install cargo-deb --locked` (scripts/test does)"
        ),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_debian_package_installs_and_its_binary_starts() {
    let out = tempfile::tempdir().unwrap();
    // cargo-deb finds `target/release/haneul` through cargo's target directory: the binary
    // this test run built (CARGO_TARGET_DIR, as scripts/test sets it, or the workspace's).
    let binary = Path::new(env!("CARGO_BIN_EXE_haneul"));
    let target_dir = binary.parent().unwrap().parent().unwrap();
    run(Command::new(cargo_deb())
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "-p",
            "haneul-cli",
            "--no-build",
            "--strip",
            "--fast",
            "--output",
        ])
        .arg(out.path()));
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");

    let fields = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    assert!(fields.contains("Package: haneul"), "{fields}");
    assert!(
        fields.contains("libc6"),
        "dependencies found by $auto: {fields}"
    );

    // A throwaway root with an empty dpkg database; --unpack puts the files in place through
    // dpkg without running the maintainer scripts, which would act on this machine's users.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(r.join(f), "").unwrap();
    }
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-depends", "--force-not-root", "--unpack"])
        .arg(&deb));
    let listed = run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["-L", "haneul"]));
    for (path, want) in [
        ("usr/bin/haneul", 0o755),
        ("usr/bin/haneul-full", 0o755),
        ("usr/lib/systemd/system/haneul-server.service", 0o644),
        ("usr/lib/systemd/system/haneul-agent.service", 0o644),
        ("usr/lib/sysusers.d/haneul.conf", 0o644),
        ("etc/haneul/server.env", 0o640),
        ("etc/haneul/agent.env", 0o600),
        ("usr/share/doc/haneul/operations.md", 0o644),
    ] {
        assert!(
            listed.contains(&format!("/{path}")),
            "dpkg -L lacks /{path}:\n{listed}"
        );
        // Unpacked but not configured, a conffile waits beside its place as NAME.dpkg-new.
        let on_disk = [r.join(path), r.join(format!("{path}.dpkg-new"))]
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("/{path} is not in the throwaway root"));
        assert_eq!(mode(&on_disk), want, "mode of /{path}");
    }
    let conffiles =
        std::fs::read_to_string(r.join("var/lib/dpkg/info/haneul.conffiles")).unwrap_or_default();
    assert!(
        conffiles.contains("/etc/haneul/server.env") && conffiles.contains("/etc/haneul/agent.env"),
        "the configuration files are conffiles, kept on upgrade: {conffiles}"
    );
    let postinst = r.join("var/lib/dpkg/info/haneul.postinst");
    run(Command::new("sh").arg("-n").arg(&postinst));
    let installed = r.join("usr/bin/haneul");
    let size = std::fs::metadata(&installed).unwrap().len();
    assert!(
        size < std::fs::metadata(binary).unwrap().len(),
        "the packaged binary is stripped ({size} bytes)"
    );

    // The units as systemd reads them: no unknown keys, no bad values (both only warnings, so
    // any output fails), ExecStart's binary there. The targets the units' default dependencies
    // name come from this machine's systemd.
    for entry in std::fs::read_dir("/usr/lib/systemd/system")
        .unwrap()
        .flatten()
    {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "target") {
            std::fs::copy(&p, r.join("usr/lib/systemd/system").join(entry.file_name())).unwrap();
        }
    }
    let verify = Command::new("systemd-analyze")
        .arg(format!("--root={}", r.display()))
        .args(["verify", "--man=no"])
        .arg(r.join("usr/lib/systemd/system/haneul-server.service"))
        .arg(r.join("usr/lib/systemd/system/haneul-agent.service"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    // The installed binary starts a server that answers /healthz (`server` is handed over to
    // the installed haneul-full).
    let version = run(Command::new(&installed).arg("--version"));
    assert!(version.starts_with("haneul "), "{version}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(&installed)
        .arg("server")
        .env("HANEUL_DATA_DIR", data.path())
        .env("HANEUL_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            if reply.starts_with("HTTP/1.1 200") {
                break true;
            }
        }
        if Instant::now() > until || server.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(answered, "the installed server did not answer /healthz");
}
