//! Interactive sessions (docs/interactive.md): `haneul run --pty CMD` (and `srun --pty CMD`,
//! `salloc`) submits an interactive job, waits for it to start and attaches this terminal to
//! the job's; `haneul attach ID` attaches to a running one.
//!
//! Attached, the local terminal is in raw mode (with `--pty`), so every key, Ctrl-C's 0x03
//! included, goes to the remote terminal, where the foreground program gets it as it would
//! locally; a window resize (SIGWINCH) is sent as a resize frame; the remote program's exit
//! status becomes this command's. A lost connection is attached again while the job runs;
//! the server keeps the job for its grace period (60 s by default) while nobody is attached.

use crate::client::{self, Api, Conn};
use crate::jobfile::JobFile;
use crate::output::UsageError;
use crate::slurm;
use anyhow::{Context, bail};
use clap::Args;
use haneul_api::JobDetail;
use haneul_api::terminal::Frame;
use haneul_client::blocking::Incoming;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The remote program's exit status, for `main` to exit with (nothing more is printed).
#[derive(Debug)]
pub struct RemoteExit(pub u8);

impl std::fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the remote program exited with status {}", self.0)
    }
}

impl std::error::Error for RemoteExit {}

#[derive(Args)]
#[command(after_help = "Examples:
  haneul run --gpus 1 --pty bash
  haneul run --gpus 2 --time 2h --name debug --pty bash -l
  haneul run --gpus 1 -- nvidia-smi        (no --pty: output and exit status, no raw mode)
  srun --gres=gpu:1 --pty bash             (the same through Slurm's name, docs/slurm.md)

The job ends when the program exits; its exit status is this command's. If the connection
is lost, `haneul attach ID` within the server's grace period (60 s by default) picks the
terminal up again, with what it printed meanwhile; after it, the job is cancelled.")]
pub struct RunArgs {
    /// GPUs of the one task.
    #[arg(long)]
    gpus: Option<u32>,
    /// Nodes: an interactive job runs one task on one node.
    #[arg(long)]
    nodes: Option<u32>,
    /// CPU cores per task (a task without GPUs must ask for some).
    #[arg(long)]
    cpus_per_task: Option<f64>,
    /// GPU model the job may run on; several comma-separated (H200,H100).
    #[arg(long)]
    gpu_model: Option<String>,
    /// Time limit: 90s, 10m, 2h, 1d, 1:30:00 (a bare number is minutes, as in Slurm).
    #[arg(long)]
    time: Option<String>,
    /// The job's name (default: the program's name).
    #[arg(long)]
    name: Option<String>,
    /// low, normal, high or urgent.
    #[arg(long)]
    priority: Option<String>,
    /// Project id (default: the config's project, HANEUL_PROJECT, or your only project).
    #[arg(long)]
    project: Option<i64>,
    /// Put this terminal in raw mode, so that every key (Ctrl-C too) goes to the remote
    /// program, as ssh does; without it, lines are sent as typed and Ctrl-C is passed on.
    #[arg(long)]
    pty: bool,
    #[command(flatten)]
    conn: Conn,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
#[command(after_help = "Examples:
  haneul attach 42
  haneul attach 42 --no-pty     (lines as typed, for a script feeding the session)

Attaching takes the terminal over from another attach of the same job. Only the job's
owner (or a centre administrator) may attach.")]
pub struct AttachArgs {
    /// The interactive job's id.
    id: i64,
    /// Leave this terminal as it is instead of switching it to raw mode.
    #[arg(long)]
    no_pty: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Who speaks: Haneul's own words, or srun's (for the Slurm name).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Voice {
    Haneul,
    Srun,
}

impl Voice {
    fn say(self, haneul: String, srun: String) {
        match self {
            Voice::Haneul => eprintln!("{haneul}"),
            Voice::Srun => eprintln!("srun: {srun}"),
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let file = JobFile {
        name: args.name.or_else(|| {
            std::path::Path::new(&args.command[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        }),
        gpus: args.gpus,
        nodes: args.nodes,
        cpus_per_task: args.cpus_per_task,
        gpu_model: args.gpu_model,
        time: args.time,
        priority: args.priority,
        project: args.project,
        command: Some(args.command),
        ..JobFile::default()
    };
    let (api, job) = client::submit_interactive(&args.conn, &file, None)?;
    session(&api, job.id, args.pty, Voice::Haneul)
}

pub fn attach(args: AttachArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    finish(attach_loop(&api, args.id, !args.no_pty)?)
}

/// `srun [OPTIONS] [--pty] PROGRAM [ARGS]` and `salloc [OPTIONS] [PROGRAM]` (a shell on the
/// allocated node by default): Slurm's options as `sbatch` reads them.
pub fn srun(conn: &Conn, name: &str, args: &[String]) -> anyhow::Result<()> {
    let pty = args.iter().any(|a| a == "--pty") || name == "salloc";
    let words: Vec<String> = args.iter().filter(|a| *a != "--pty").cloned().collect();
    let mut warnings = Vec::new();
    let (opts, used) = slurm::options(&words, name, &mut warnings)?;
    let mut command: Vec<String> = words[used..].to_vec();
    if command.is_empty() {
        if name == "salloc" {
            command = vec!["bash".into(), "-l".into()];
        } else {
            return Err(UsageError(format!(
                "{name}: give the program to run, e.g. {name} --gres=gpu:1 --pty bash"
            ))
            .into());
        }
    }
    // Inside a job (a batch script's `srun python train.py`): a job step runs in place, on
    // the node the script runs on, as the script already runs in every task of the gang.
    if name == "srun" && std::env::var_os("HANEUL_JOB_ID").is_some() {
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(&command[0])
            .args(&command[1..])
            .exec();
        bail!("srun: cannot run {}: {err}", command[0]);
    }
    let mut r = slurm::request(&opts)?;
    warnings.append(&mut r.warnings);
    for w in &warnings {
        eprintln!("{name}: warning: {w}");
    }
    if r.file.name.is_none() {
        r.file.name = std::path::Path::new(&command[0])
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
    }
    r.file.command = Some(command);
    let (api, job) = client::submit_interactive(conn, &r.file, Some(&r))?;
    session(&api, job.id, pty, Voice::Srun)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

extern "C" fn on_resize(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

/// Waits for job `id` to start (Ctrl-C meanwhile cancels it, as srun does), then attaches.
fn session(api: &Api, id: i64, pty: bool, voice: Voice) -> anyhow::Result<()> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    voice.say(
        format!("job {id} queued; waiting for it to start (Ctrl-C cancels it)"),
        format!("job {id} queued and waiting for resources"),
    );
    let mut announced = false;
    loop {
        if INTERRUPTED.swap(false, Ordering::SeqCst) {
            let _ = api.call::<serde_json::Value>(
                "POST",
                &format!("/v1/jobs/{id}/cancel"),
                Some(serde_json::json!({ "reason": "interrupted while waiting to start" })),
            );
            voice.say(
                format!("job {id} cancelled"),
                format!("Job allocation {id} has been revoked"),
            );
            return Err(RemoteExit(130).into());
        }
        let d: JobDetail = api.call("GET", &format!("/v1/jobs/{id}"), None)?;
        match d.job.state.as_str() {
            "queued" => {
                if !announced && let Some(r) = &d.job.pending_reason {
                    eprintln!("  ({}: {})", r.code, r.message);
                    announced = true;
                }
            }
            // Ended already (a program that exits at once): the server may still hold its
            // output and status, which the attach then shows.
            _ => break,
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    voice.say(
        format!("job {id} started; attaching"),
        format!("job {id} has been allocated resources"),
    );
    finish(attach_loop(api, id, pty)?)
}

fn finish(code: u8) -> anyhow::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(RemoteExit(code).into())
    }
}

/// The exit status of an ended job, saying how it ended when that was not by its program.
fn ended(d: &JobDetail) -> u8 {
    let j = &d.job;
    if !matches!(j.state.as_str(), "succeeded" | "failed") {
        let why = j.reason.as_deref().unwrap_or_default();
        eprintln!("job {} {} {why}", j.id, j.state);
    }
    j.exit_code.map_or(1, |c| c.clamp(0, 255) as u8)
}

/// The local terminal in raw mode until dropped.
struct RawMode(libc::termios);

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a valid termios; cfmakeraw edits a copy.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot read the terminal's settings");
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot switch the terminal to raw mode");
            }
            Ok(RawMode(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

/// This terminal's size, from whichever of standard input and output is a terminal.
fn window() -> Option<(u16, u16)> {
    for fd in [0, 1, 2] {
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

fn is_tty(fd: libc::c_int) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Reads standard input on a thread of its own (it blocks), for the whole command: attaches
/// come and go, the keys go to whichever is current. `None` is the end of the input.
fn keys() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// How many times in a row a lost connection is attached again before giving up.
const REATTACH_TRIES: u32 = 10;

/// Attaches to job `id` until its program exits; its exit status.
fn attach_loop(api: &Api, id: i64, pty: bool) -> anyhow::Result<u8> {
    let raw = if pty && is_tty(0) {
        Some(RawMode::enter()?)
    } else {
        None
    };
    // SAFETY: the handlers only store to atomics.
    unsafe {
        libc::signal(libc::SIGWINCH, on_resize as *const () as libc::sighandler_t);
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    INTERRUPTED.store(false, Ordering::SeqCst);
    let keys = keys();
    let mut input_open = true;
    let mut tries = 0;
    let path = format!("/v1/jobs/{id}/terminal");
    let code = 'attach: loop {
        let ws = match api.websocket(&path) {
            Ok(ws) => ws,
            Err(e) => {
                // The job may have ended meanwhile: its status then stands.
                if let Ok(d) = api.call::<JobDetail>("GET", &format!("/v1/jobs/{id}"), None)
                    && !matches!(d.job.state.as_str(), "running" | "stopping")
                    && e.status() != Some(403)
                {
                    drop(raw);
                    return Ok(ended(&d));
                }
                tries += 1;
                // A refusal (not the owner, not interactive) does not change by trying again.
                if tries > REATTACH_TRIES || e.status().is_some_and(|s| s < 500) {
                    drop(raw);
                    return Err(Api::refusal(e));
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut taken_over = false;
        if let Some((rows, cols)) = window() {
            ws.send(Frame::Resize { rows, cols }.encode());
        }
        let mut last_ok = Instant::now();
        loop {
            while input_open && let Ok(k) = keys.try_recv() {
                match k {
                    Some(bytes) => {
                        for chunk in bytes.chunks(haneul_api::terminal::MAX_DATA) {
                            ws.send(Frame::Data(chunk.to_vec()).encode());
                        }
                    }
                    None => {
                        input_open = false;
                        // The end of piped input is the remote terminal's end of file.
                        if raw.is_none() {
                            ws.send(Frame::Data(vec![4]).encode());
                        }
                    }
                }
            }
            if INTERRUPTED.swap(false, Ordering::SeqCst) {
                ws.send(Frame::Data(vec![3]).encode());
            }
            if RESIZED.swap(false, Ordering::SeqCst)
                && let Some((rows, cols)) = window()
            {
                ws.send(Frame::Resize { rows, cols }.encode());
            }
            match ws.recv_timeout(Duration::from_millis(20)) {
                None => {}
                Some(Incoming::Message(m)) => {
                    last_ok = Instant::now();
                    match Frame::decode(&m) {
                        Ok(Frame::Data(d)) => {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&d);
                            let _ = out.flush();
                        }
                        Ok(Frame::Exit(code)) => break 'attach code.clamp(0, 255) as u8,
                        Ok(Frame::Notice(text)) => {
                            taken_over |= text.contains("elsewhere");
                            eprint!("\r\n[haneul: {text}]\r\n");
                        }
                        Ok(Frame::Resize { .. }) | Err(_) => {}
                    }
                }
                Some(Incoming::Closed(_)) => break,
            }
        }
        if taken_over {
            drop(raw);
            eprintln!("job {id}: detached (attached from elsewhere)");
            return Ok(0);
        }
        // Lost without an exit: the job may have ended, else attach again.
        let d: JobDetail = api.call("GET", &format!("/v1/jobs/{id}"), None)?;
        if !matches!(d.job.state.as_str(), "running" | "stopping") {
            drop(raw);
            return Ok(ended(&d));
        }
        if last_ok.elapsed() > Duration::from_secs(30) {
            tries += 1;
        }
        if tries > REATTACH_TRIES {
            drop(raw);
            bail!(
                "lost the terminal of job {id}; `haneul attach {id}` within the server's grace \
                 period picks it up again"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(raw);
    Ok(code)
}
