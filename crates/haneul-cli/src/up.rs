//! `haneul up`: a whole centre on one machine. Starts `haneul server` and a local `haneul agent`
//! as child processes, creates a demo organisation, project and user on the first run, and
//! writes a client config so that `haneul submit` and friends work from the same shell.

use crate::agent::Client;
use crate::client::{config_path, write_config};
use crate::i18n::{M, t};
use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul up\n  \
    haneul up --data-dir ./centre --listen 127.0.0.1:8471 --simulate-gpus 4xH200\n  \
    haneul up --tls")]
pub struct UpArgs {
    /// Where the database, tokens and logs live (default ~/.local/share/haneul).
    #[arg(long, env = "HANEUL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API.
    #[arg(long, env = "HANEUL_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// Simulated GPUs, COUNTxMODEL (default 8xH200 when nvidia-smi is absent).
    #[arg(long)]
    simulate_gpus: Option<String>,
    /// Serve HTTPS with a local certificate authority made on the first run and kept in
    /// DATA_DIR/tls/ (ca.pem is what clients trust).
    #[arg(long)]
    tls: bool,
    /// Passed to the local agent.
    #[command(flatten)]
    containers: crate::agent::ContainerArgs,
    /// Seconds between the local agent's GPU telemetry samples.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    telemetry_interval: u64,
    /// Seconds an interactive job waits for its owner to attach again (passed to the server).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    terminal_grace: u64,
    /// Minutes a portal JupyterLab session may sit idle before it ends (passed to the server).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=10_080))]
    jupyter_idle: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The demo objects created on the first run, kept in DATA_DIR/up.toml.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpState {
    org: i64,
    project: i64,
    user_token_file: PathBuf,
    agent_token_file: PathBuf,
}

impl UpState {
    /// `None` when there is no state yet (the first run). A file that exists but does not read
    /// is an error naming the file and the field: recreating the demo objects over it would
    /// collide with the ones it names.
    fn load(path: &Path) -> anyhow::Result<Option<UpState>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&text)
            .map(Some)
            .with_context(|| format!("{} is corrupt; remove it to start over", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<UpState> {
        let de = toml::Deserializer::parse(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.inner().message().to_string();
            if field == "." || field.is_empty() {
                anyhow::anyhow!("{message}")
            } else {
                anyhow::anyhow!("field `{field}`: {message}")
            }
        })
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self).context("cannot write the state of haneul up")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Child processes, stopped with SIGTERM (then SIGKILL after 10 s) when dropped.
struct Children(Vec<(&'static str, Child)>);

impl Children {
    fn stop(&mut self) {
        for (_, c) in self.0.iter().rev() {
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let until = Instant::now() + Duration::from_secs(10);
        for (_, c) in self.0.iter_mut().rev() {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > until => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.0.clear();
    }

    fn exited(&mut self) -> Option<&'static str> {
        self.0
            .iter_mut()
            .find_map(|(n, c)| matches!(c.try_wait(), Ok(Some(_))).then_some(*n))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/haneul"))
}

/// Logs past this size are rotated when `haneul up` starts (to `NAME.1`, the older one gone).
const LOG_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens a child's log for appending (0600): a restart keeps what the last run wrote, unless
/// the log has grown past [`LOG_ROTATE_BYTES`], when it moves to `NAME.1` first.
fn open_log(log: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = log.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(log, &old).with_context(|| format!("cannot rotate {}", log.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Gives the child `cmd` starts a parent-death signal (SIGTERM): a parent killed by SIGKILL
/// cannot stop its children, so the kernel does it, and no orphaned server keeps a port.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and raise are async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        });
    }
}

fn spawn(exe: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let out = open_log(log)?;
    let err = out.try_clone()?;
    // The children run in the data directory (their paths are absolute), so that everything
    // `haneul up` started can be found by its working directory.
    let mut cmd = Command::new(exe);
    die_with_parent(&mut cmd);
    cmd.args(args)
        .current_dir(log.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

fn api(
    client: &Client,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::to_string(&body)?;
    let body = if method == "GET" {
        None
    } else {
        Some(body.as_str())
    };
    match client.raw(method, path, body) {
        Ok((_, text)) => Ok(serde_json::from_str(&text)?),
        Err(e) => bail!("{method} {path}: {e}"),
    }
}

/// The centre's URL: https when the server serves TLS with a certificate from `ca_file`.
fn base_url(listen: SocketAddr, ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(_) => format!("https://{listen}"),
        None => format!("http://{listen}"),
    }
}

/// The local agent's flags for trusting the CA of `up --tls`.
fn agent_tls_args(ca_file: Option<&Path>) -> Vec<String> {
    ca_file
        .map(|ca| vec!["--ca-file".to_string(), ca.display().to_string()])
        .unwrap_or_default()
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    // What up writes (tokens, state, logs) is for this account only. The data directory itself
    // is 0711: the agent's work directory inside it must be passable for tasks that run as
    // their owners; the server's directory is 0700 and the rest 0600.
    // SAFETY: umask has no preconditions.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot set the mode of {}", data_dir.display()))?;
    }
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let exe = std::env::current_exe().context("cannot find the haneul binary")?;
    let server_dir = data_dir.join("server");
    let mut server_args: Vec<String> = vec![
        "server".into(),
        "--data-dir".into(),
        server_dir.display().to_string(),
        "--listen".into(),
        args.listen.to_string(),
        "--terminal-grace".into(),
        args.terminal_grace.to_string(),
        "--jupyter-idle".into(),
        args.jupyter_idle.to_string(),
    ];
    // With --tls every client of this centre, ours and the local agent included, trusts the
    // local CA and nothing else.
    let ca_file: Option<PathBuf> = if args.tls {
        let ca = haneul_server::tls::local_ca(&data_dir.join("tls"))
            .context("cannot make the local certificate authority")?;
        if ca.created {
            println!(
                "made a local certificate authority: {}",
                ca.ca_cert.display()
            );
        }
        server_args.extend([
            "--tls-cert".into(),
            ca.server.cert.display().to_string(),
            "--tls-key".into(),
            ca.server.key.display().to_string(),
            // The portal's session cookie then travels over TLS only.
            "--secure-cookie".into(),
        ]);
        Some(ca.ca_cert.clone())
    } else {
        None
    };
    let url = base_url(args.listen, ca_file.as_deref());
    let mut children = Children(Vec::new());
    children.0.push((
        "server",
        spawn(&exe, &server_args, &data_dir.join("server.log"))?,
    ));
    let anon = Client::with_ca(&url, String::new(), ca_file.clone())?;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        if children.exited().is_some() {
            bail!(
                "{}",
                t(M::UpServerStopped)
                    .arg("log", data_dir.join("server.log").display())
                    .arg("listen", args.listen)
            );
        }
        if anon.raw("GET", "/healthz", None).is_ok() {
            break;
        }
        if Instant::now() > until {
            bail!(
                "{}",
                t(M::UpNoHealthz).arg("log", data_dir.join("server.log").display())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin_file = server_dir.join("admin.token");
    let admin_token = std::fs::read_to_string(&admin_file)
        .with_context(|| format!("cannot read the admin token {}", admin_file.display()))?
        .trim()
        .to_string();
    let admin = Client::with_ca(&url, admin_token, ca_file.clone())?;

    let has_nvidia = Command::new("nvidia-smi")
        .arg("-L")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let simulate = match (&args.simulate_gpus, has_nvidia) {
        (Some(s), _) => Some(s.clone()),
        (None, false) => Some("8xH200".to_string()),
        (None, true) => None,
    };
    let quota = simulate.as_ref().and_then(|s| {
        let (n, model) = s.split_once('x')?;
        Some((n.parse::<u64>().ok()?, model.to_string()))
    });

    let state_file = data_dir.join("up.toml");
    let state = match UpState::load(&state_file)? {
        Some(s) => {
            println!("{}", t(M::UpReusing).arg("dir", data_dir.display()));
            s
        }
        None => {
            let org = api(
                &admin,
                "POST",
                "/v1/orgs",
                serde_json::json!({"name": "demo", "country": "KR"}),
            )?["id"]
                .as_i64()
                .context("no org id")?;
            api(
                &admin,
                "POST",
                "/v1/pools",
                serde_json::json!({"name": "local"}),
            )?;
            let quotas: Vec<serde_json::Value> = quota
                .iter()
                .map(|(n, m)| serde_json::json!({"gpu_model": m, "guaranteed_milli": n * 1000}))
                .collect();
            let project = api(
                &admin,
                "POST",
                "/v1/projects",
                serde_json::json!({"org": org, "name": "demo", "quotas": quotas}),
            )?["id"]
                .as_i64()
                .context("no project id")?;
            // An award for a year of the simulated GPUs, so that the demo project is metered
            // like any other and `haneul usage` has something to show.
            if let Some((n, m)) = &quota {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                api(
                    &admin,
                    "POST",
                    "/v1/awards",
                    serde_json::json!({"project": project, "gpu_model": m,
                        "gpu_hours": *n as i64 * 24 * 365, "gpu_quota": *n as i64,
                        "valid_from": now, "valid_until": now + 365 * 86_400_000i64}),
                )?;
            }
            let token = |name: &str,
                         role: &str,
                         org: serde_json::Value,
                         projects: Vec<i64>|
             -> anyhow::Result<String> {
                let u = api(
                    &admin,
                    "POST",
                    "/v1/users",
                    serde_json::json!({"name": name, "role": role, "org": org, "projects": projects}),
                )?;
                let t = api(
                    &admin,
                    "POST",
                    "/v1/tokens",
                    serde_json::json!({"user": u["id"]}),
                )?;
                Ok(t["secret"].as_str().context("no token secret")?.to_string())
            };
            let user_token = token("demo", "member", org.into(), vec![project])?;
            let agent_token = token("local-agent", "agent", serde_json::Value::Null, vec![])?;
            let s = UpState {
                org,
                project,
                user_token_file: data_dir.join("user.token"),
                agent_token_file: data_dir.join("agent.token"),
            };
            write_secret(&s.user_token_file, &user_token)?;
            write_secret(&s.agent_token_file, &agent_token)?;
            s.save(&state_file)?;
            println!("{}", t(M::UpCreated));
            s
        }
    };

    let mut agent_args: Vec<String> = vec![
        "agent".into(),
        "--server".into(),
        url.clone(),
        "--token-file".into(),
        state.agent_token_file.display().to_string(),
        "--name".into(),
        "local".into(),
        "--pool".into(),
        "local".into(),
        "--work-dir".into(),
        data_dir.join("work").display().to_string(),
        // Everything of `haneul up` is on this machine: the server reaches the node's tasks
        // (a portal JupyterLab session, docs/jupyter.md) on loopback, not by the name `local`.
        "--advertise-addr".into(),
        "127.0.0.1".into(),
    ];
    agent_args.extend(agent_tls_args(ca_file.as_deref()));
    agent_args.extend(args.containers.to_flags());
    agent_args.push("--telemetry-interval".into());
    agent_args.push(args.telemetry_interval.to_string());
    match &simulate {
        Some(s) => {
            if has_nvidia {
                println!("{}", t(M::UpSimulatingAsked).arg("gpus", s));
            } else {
                println!("{}", t(M::UpSimulatingNoGpu).arg("gpus", s));
            }
            agent_args.push("--simulate-gpus".into());
            agent_args.push(s.clone());
        }
        None => println!("{}", t(M::UpRealGpus)),
    }
    children.0.push((
        "agent",
        spawn(&exe, &agent_args, &data_dir.join("agent.log"))?,
    ));

    // Jobs submitted before a node fits them fail at once: wait for the agent's node.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if STOP.load(Ordering::SeqCst) {
            children.stop();
            return Ok(());
        }
        if let Some(who) = children.exited() {
            bail!(
                "{}",
                t(M::UpChildStoppedAtStart)
                    .arg("who", who)
                    .arg("log", data_dir.join(format!("{who}.log")).display())
            );
        }
        if let Ok(nodes) = api(&admin, "GET", "/v1/nodes", serde_json::Value::Null)
            && nodes
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["name"] == "local" && n["state"] == "up")
        {
            break;
        }
        if Instant::now() > until {
            bail!(
                "{}",
                t(M::UpNodeNotUp).arg("log", data_dir.join("agent.log").display())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let config = config_path()?;
    write_config(
        &config,
        &url,
        &state.user_token_file,
        Some(state.project),
        ca_file.as_deref(),
    )?;
    println!(
        "{}",
        t(M::UpBanner)
            .arg("url", &url)
            .arg("token", state.user_token_file.display())
            .arg("config", config.display())
            .arg("dir", data_dir.display())
    );

    loop {
        if STOP.load(Ordering::SeqCst) {
            println!("{}", t(M::UpStopping));
            children.stop();
            return Ok(());
        }
        if let Some(who) = children.exited() {
            children.stop();
            bail!(
                "{}",
                t(M::UpChildStopped)
                    .arg("who", who)
                    .arg("log", data_dir.join(format!("{who}.log")).display())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_plumbing_names_the_ca_everywhere() {
        let listen: SocketAddr = "127.0.0.1:8470".parse().unwrap();
        assert_eq!(base_url(listen, None), "http://127.0.0.1:8470");
        assert!(agent_tls_args(None).is_empty());
        let ca = Path::new("/d/tls/ca.pem");
        assert_eq!(base_url(listen, Some(ca)), "https://127.0.0.1:8470");
        assert_eq!(agent_tls_args(Some(ca)), ["--ca-file", "/d/tls/ca.pem"]);
    }

    #[test]
    fn state_file_round_trips_and_a_corrupt_one_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.toml");
        assert!(UpState::load(&path).unwrap().is_none());
        let state = UpState {
            org: 3,
            project: 7,
            user_token_file: dir.path().join("we \"quote\" this\\user.token"),
            agent_token_file: dir.path().join("agent.token"),
        };
        state.save(&path).unwrap();
        assert_eq!(UpState::load(&path).unwrap(), Some(state));

        let error = |text: &str| {
            std::fs::write(&path, text).unwrap();
            format!("{:#}", UpState::load(&path).unwrap_err())
        };
        let bad = error(
            "org = \"three\"\nproject = 7\nuser_token_file = \"u\"\nagent_token_file = \"a\"\n",
        );
        assert!(bad.contains(&path.display().to_string()), "{bad}");
        assert!(bad.contains("field `org`"), "{bad}");
        let missing = error("org = 3\nuser_token_file = \"u\"\nagent_token_file = \"a\"\n");
        assert!(missing.contains("project"), "{missing}");
        let syntax = error("org = = 3\n");
        assert!(syntax.contains(&path.display().to_string()), "{syntax}");
    }
}
