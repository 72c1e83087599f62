//! Every `haneul` command, behind two binaries: `haneul-full` carries all of them (the
//! server, the agent, the simulator, the benches and the client commands); `haneul`, the one
//! users type, carries only the commands a shell loop runs once per job and hands every other
//! command to `haneul-full` beside it ([`front_door`]). Each command has its own module.

mod agent;
mod awards;
mod bench;
mod bench_agent;
mod bench_centre;
mod bench_engine;
mod bench_gang;
mod bench_halfopen;
mod bench_submit;
mod bench_telemetry;
mod client;
mod eff;
mod help_ko;
mod i18n;
mod interactive;
mod jobfile;
mod login;
mod ops;
mod output;
mod plan;
mod server;
mod sim;
mod slurm;
mod slurm_cmds;
mod swarm;
mod up;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use i18n::{M, t};
use output::UsageError;

#[derive(Parser)]
#[command(
    name = "haneul",
    version,
    about = "Control plane for shared national GPU centres",
    after_help = "Examples:
  haneul up                                   a whole centre on this machine
  haneul submit --gpus 1 -- python train.py   then: haneul queue, haneul logs ID
  haneul completions bash > ~/.local/share/bash-completion/completions/haneul

Exit status: 0 done, 1 error (the message says what to do next), 2 usage mistake.
LANG=ko_KR.UTF-8 (or LC_ALL, LC_MESSAGES) gives Korean messages; NO_COLOR turns colour off."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks of the scheduling engine (openb replay, full and incremental passes).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Replay a workload through the engine under several policies and report.
    Sim(sim::SimArgs),
    /// Compare candidate fleets on one workload: cost per delivered GPU-hour, waits, utilisation.
    Plan(plan::PlanArgs),
    /// Run the control plane: REST API, scheduler and agent protocol (SQLite in DIR by default).
    Server(server::ServerArgs),
    /// Run the node agent: register this node's GPUs with a server and run the tasks it assigns.
    Agent(agent::AgentArgs),
    /// Many simulated nodes in one process, for scale and fault tests (tasks run no process).
    Swarm(swarm::SwarmArgs),
    /// A whole centre on this machine: server, local agent, demo project and user, client config.
    Up(up::UpArgs),
    /// Submit a job (like sbatch): prints its id.
    Submit(client::SubmitArgs),
    /// List your jobs (like squeue).
    Queue(client::QueueArgs),
    /// Show one job, its attempts and state.
    Show(client::ShowArgs),
    /// Print a job's output.
    Logs(client::LogsArgs),
    /// How well a job used its GPUs and CPUs (like seff): utilisation, memory, energy.
    Eff(eff::EffArgs),
    /// Cancel a job (like scancel).
    Cancel(client::CancelArgs),
    /// Run a program interactively on a GPU node (like srun --pty): waits for it to start and
    /// attaches this terminal; its exit status is this command's.
    Run(interactive::RunArgs),
    /// Attach this terminal to a running interactive job (`haneul run`).
    Attach(interactive::AttachArgs),
    /// Your awards: GPU-hours granted, used and left, validity and state (like sacct).
    Usage(client::UsageArgs),
    /// Show who your token acts as: user, role, organisation, projects.
    Whoami(client::WhoamiArgs),
    /// Sign in with your institution's identity provider (device flow: prints a URL and a code).
    #[command(
        after_help = "Examples:\n  haneul login --list\n  haneul login\n  haneul login --issuer kaist --server https://haneul.example.kr:8470"
    )]
    Login(login::LoginArgs),
    /// Sign out: revoke the token of `haneul login` and the provider's refresh token.
    #[command(after_help = "Examples:\n  haneul logout")]
    Logout(login::LogoutArgs),
    /// Projects: create, list, show, set a quota (operators).
    Project(ops::ProjectArgs),
    /// Users: create, list, show (operators).
    User(ops::UserArgs),
    /// Tokens: create, list, revoke.
    Token(ops::TokenArgs),
    /// GPU pools: create, list (operators).
    Pool(ops::PoolArgs),
    /// Nodes: list, show, drain, resume (operators).
    Node(ops::NodeArgs),
    /// The audit log: list with filters, verify the hash chain.
    Audit(ops::AuditArgs),
    /// Organisations: register (with export screening), list, show, verify, denied parties.
    #[command(
        subcommand,
        after_help = "Examples:\n  haneul org create kaist --country KR\n  haneul org list"
    )]
    Org(awards::OrgCommand),
    /// Awards: grant, list, top up or take back, underuse, notices.
    #[command(
        subcommand,
        after_help = "Examples:\n  haneul award create --project 3 --gpu-model H200 --gpu-hours 5000 --days 90 --gpu-quota 4\n  haneul award list"
    )]
    Award(awards::AwardCommand),
    /// Programme calls: open with tracks, close, rank and award.
    #[command(
        subcommand,
        after_help = "Examples:\n  haneul call list\n  haneul call award 1"
    )]
    Call(awards::CallCommand),
    /// Applications to calls and reviewer scores.
    #[command(
        subcommand,
        after_help = "Examples:\n  haneul application list --call 1\n  haneul application score 4 --score 8"
    )]
    Application(awards::ApplicationCommand),
    /// Monthly statement per project and organisation, as a table, JSON or CSV.
    Statement(awards::StatementArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  haneul completions bash > ~/.local/share/bash-completion/completions/haneul
  haneul completions zsh > ~/.zfunc/_haneul
  haneul completions fish > ~/.config/fish/completions/haneul.fish")]
    Completions { shell: clap_complete::Shell },
}

/// Examples for the commands whose modules do not carry their own.
const MORE_EXAMPLES: &[(&str, &str)] = &[
    (
        "sim",
        "Examples:
  haneul sim --scenario examples/scenarios/small.toml
  haneul sim --trace philly:../shared/traces/philly/cluster_job_log --fleet fleet.toml --json",
    ),
    (
        "plan",
        "Examples:
  haneul plan --scenario s.toml --fleet a.toml --fleet b.toml
  haneul plan --scenario s.toml --sweep --servers 32..256/32 --mix H200 --mix H200:3+NPU:1 --out /tmp/plan",
    ),
    (
        "bench",
        "Examples:
  haneul bench engine
  haneul bench openb --pods openb_pod_list_default.csv --json",
    ),
];

/// The command tree in the user's language, with examples everywhere.
fn command() -> clap::Command {
    command_in(i18n::lang())
}

fn command_in(lang: i18n::Lang) -> clap::Command {
    let mut cmd = Cli::command();
    for (name, text) in MORE_EXAMPLES {
        cmd = cmd.mut_subcommand(*name, |c| {
            let c = c.after_help(*text);
            let subs: Vec<String> = c
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect();
            subs.into_iter()
                .fold(c, |c, s| c.mut_subcommand(s, |s| s.after_help(*text)))
        });
    }
    match lang {
        i18n::Lang::Ko => help_ko::apply(cmd),
        i18n::Lang::En => cmd,
    }
}

/// Every command. Errors are printed as one line with their causes (`error: what: why`), never
/// as a panic or a backtrace; the exit status is 2 for a usage mistake, else 1.
pub fn main() -> std::process::ExitCode {
    // Run through a link named `sbatch`, `squeue`, ...: behave as that Slurm command.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if let Some(name) = slurm_cmds::personality(&argv0) {
        return as_slurm_command(name);
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match quick_parse(&argv) {
        Some(cli) => cli,
        None => {
            let mut cmd = command();
            let argv = hoist_connection_options(argv, &cmd);
            let matches = cmd
                .try_get_matches_from_mut(argv)
                .unwrap_or_else(|e| e.exit());
            // The tree is large and the process ends soon: freeing it is work for nothing.
            std::mem::forget(cmd);
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
        }
    };
    if !cli.command.is_daemon() {
        // A command whose reader has gone (`haneul queue | head`) ends quietly, as other Unix
        // tools do, instead of panicking on the failed write. Daemons keep Rust's default
        // (ignored), so a closed socket is an error they handle, never a silent death.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    exit_status(run(cli))
}

/// The binary beside `haneul` that carries every command.
pub const FULL_BINARY: &str = "haneul-full";

/// What `haneul` runs: the quick commands ([`QUICK_COMMANDS`]), the Slurm names and `--version`
/// here, and anything else (every other command, help, a usage mistake) by replacing this
/// process with `haneul-full` from the same directory, with the same arguments. Starting this
/// small binary costs a fraction of the whole one, which is most of a `haneul submit` in a
/// shell loop; the handing over costs one more `exec` to the commands that need the rest.
pub fn front_door() -> std::process::ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = argv.first().cloned().unwrap_or_default();
    if let Some(name) = slurm_cmds::personality(&argv0) {
        return as_slurm_command(name);
    }
    if argv.len() == 2 && (argv[1] == "--version" || argv[1] == "-V") {
        // As the whole tree answers it, without the hand-over: the floor of a start.
        println!("haneul {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    let Some(cli) = quick_parse(&argv) else {
        return hand_over(&argv);
    };
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    exit_status(match cli.command {
        Command::Submit(args) => client::submit(args),
        Command::Queue(args) => client::queue(args),
        Command::Show(args) => client::show(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Logs(args) => client::logs(args),
        // `quick_parse` makes only the commands above; the full binary takes anything else.
        _ => return hand_over(&argv),
    })
}

/// Replaces this process with `haneul-full` beside it, `argv` unchanged (so its messages name
/// the command as it was typed); returns only when that cannot be done.
fn hand_over(argv: &[std::ffi::OsString]) -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL_BINARY),
        Err(e) => {
            eprintln!(
                "error: cannot find where this binary is, to run {FULL_BINARY} beside it: {e}"
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut cmd = std::process::Command::new(&full);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(argv.iter().skip(1)).exec();
    eprintln!(
        "error: cannot run {}: {err}: this command is in {FULL_BINARY}, which is installed \
         beside haneul (build both with `cargo build --release -p haneul-cli`)",
        full.display()
    );
    std::process::ExitCode::FAILURE
}

/// `haneul` run through a link named after a Slurm command (`sbatch`, `squeue`, ...).
fn as_slurm_command(name: &'static str) -> std::process::ExitCode {
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match slurm_cmds::run(name, &args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<interactive::RemoteExit>().is_some() => remote_exit(&err),
        Err(err) => {
            eprintln!("{name}: error: {}", one_line(&err));
            if err.downcast_ref::<UsageError>().is_some() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// A command's outcome as the process's exit status, its error printed as one line.
fn exit_status(outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // An interactive program's own status: passed on as it is, with nothing printed.
        Err(err) if err.downcast_ref::<interactive::RemoteExit>().is_some() => remote_exit(&err),
        Err(err) => {
            let prefix = output::red(&t(M::ErrorPrefix).text(), output::stderr_colour());
            eprintln!("{prefix}: {}", one_line(&err));
            if err.downcast_ref::<UsageError>().is_some() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// The commands a shell loop runs once per job (`for ...; do haneul submit ...; done`).
const QUICK_COMMANDS: [&str; 5] = ["submit", "queue", "show", "cancel", "logs"];

/// The command tree with only the subcommand `name`: what [`quick_parse`] parses against.
fn quick_command(name: &str) -> Option<clap::Command> {
    use clap::Args;
    let name: &'static str = QUICK_COMMANDS.iter().find(|c| **c == name)?;
    let sub = clap::Command::new(name);
    let sub = match name {
        "submit" => client::SubmitArgs::augment_args(sub),
        "queue" => client::QueueArgs::augment_args(sub),
        "show" => client::ShowArgs::augment_args(sub),
        "cancel" => client::CancelArgs::augment_args(sub),
        "logs" => client::LogsArgs::augment_args(sub),
        _ => return None,
    };
    Some(clap::Command::new("haneul").subcommand(sub))
}

/// `argv` parsed without building the whole command tree, for the commands a shell loop runs
/// once per job: building and freeing the tree of every command was most of the CPU a
/// `haneul submit` spent before its request. `None` for anything else, and for whatever this
/// small tree does not accept as it is (help, version, options before the command, a usage
/// mistake): the full tree then parses it, so answers and errors are the same as ever.
fn quick_parse(argv: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::FromArgMatches;
    let name = argv.get(1)?.to_str()?;
    let mut cmd = quick_command(name)?;
    let matches = cmd.try_get_matches_from_mut(argv).ok()?;
    let (_, sub) = matches.subcommand()?;
    let command = match name {
        "submit" => Command::Submit(client::SubmitArgs::from_arg_matches(sub).ok()?),
        "queue" => Command::Queue(client::QueueArgs::from_arg_matches(sub).ok()?),
        "show" => Command::Show(client::ShowArgs::from_arg_matches(sub).ok()?),
        "cancel" => Command::Cancel(client::CancelArgs::from_arg_matches(sub).ok()?),
        "logs" => Command::Logs(client::LogsArgs::from_arg_matches(sub).ok()?),
        _ => return None,
    };
    Some(Cli { command })
}

/// The exit status of an interactive job's program ([`interactive::RemoteExit`]).
fn remote_exit(err: &anyhow::Error) -> std::process::ExitCode {
    let code = err
        .downcast_ref::<interactive::RemoteExit>()
        .map_or(1, |e| e.0);
    std::process::ExitCode::from(code)
}

/// The options every client command shares, with whether each takes a value.
const CONNECTION_OPTIONS: [(&str, bool); 4] = [
    ("--server", true),
    ("--ca-file", true),
    ("--token-file", true),
    ("--json", false),
];

/// `argv` with the connection options written before the command moved after it:
/// `haneul --server URL queue` is read as `haneul queue --server URL`. The options belong to
/// each client command (so its help lists them), and clap only lets an option flow down from
/// the command that defines it; users of Slurm's and kubectl's tools put them first.
fn hoist_connection_options(
    argv: Vec<std::ffi::OsString>,
    cmd: &clap::Command,
) -> Vec<std::ffi::OsString> {
    let mut leading = Vec::new();
    let mut i = 1;
    while let Some(arg) = argv.get(i).and_then(|a| a.to_str()) {
        let name = arg.split_once('=').map_or(arg, |(n, _)| n);
        let Some((_, takes_value)) = CONNECTION_OPTIONS.iter().find(|(o, _)| *o == name) else {
            break;
        };
        let width = if *takes_value && !arg.contains('=') {
            2
        } else {
            1
        };
        let end = (i + width).min(argv.len());
        leading.extend_from_slice(&argv[i..end]);
        i = end;
    }
    if leading.is_empty() {
        return argv;
    }
    // Past the command's path (`award create`), where the command's own options begin.
    let mut at = i;
    let mut here = cmd;
    while let Some(sub) = argv
        .get(at)
        .and_then(|a| a.to_str())
        .and_then(|name| here.find_subcommand(name))
    {
        here = sub;
        at += 1;
    }
    let mut out = vec![argv[0].clone()];
    out.extend_from_slice(&argv[i..at]);
    out.extend(leading);
    out.extend_from_slice(&argv[at..]);
    out
}

impl Command {
    /// Long-running roles that serve sockets, rather than commands that print and exit.
    fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Server(_)
                | Command::Agent(_)
                | Command::Up(_)
                | Command::Swarm(_)
                | Command::Bench(_)
        )
    }
}

/// The error and its causes on one line, leaving out causes whose text an outer message already
/// repeats (library errors often include their source's text).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
        Command::Sim(args) => sim::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Server(args) => server::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Swarm(args) => swarm::run(args),
        Command::Up(args) => up::run(args),
        Command::Submit(args) => client::submit(args),
        Command::Queue(args) => client::queue(args),
        Command::Show(args) => client::show(args),
        Command::Logs(args) => client::logs(args),
        Command::Eff(args) => eff::eff(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Run(args) => interactive::run(args),
        Command::Attach(args) => interactive::attach(args),
        Command::Usage(args) => client::usage(args),
        Command::Whoami(args) => client::whoami(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Project(args) => ops::project(args),
        Command::User(args) => ops::user(args),
        Command::Token(args) => ops::token(args),
        Command::Pool(args) => ops::pool(args),
        Command::Node(args) => ops::node(args),
        Command::Audit(args) => ops::audit(args),
        Command::Org(cmd) => awards::org(cmd),
        Command::Award(cmd) => awards::award(cmd),
        Command::Call(cmd) => awards::call(cmd),
        Command::Application(cmd) => awards::application(cmd),
        Command::Statement(args) => awards::statement(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "haneul", &mut std::io::stdout());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> clap::ArgMatches {
        let argv = args.iter().map(std::ffi::OsString::from).collect();
        let cmd = command();
        let argv = hoist_connection_options(argv, &cmd);
        cmd.try_get_matches_from(argv).unwrap()
    }

    #[test]
    fn connection_options_may_come_before_the_command() {
        let m = parsed(&["haneul", "--server", "http://a:1", "--json", "queue"]);
        let q = m.subcommand_matches("queue").unwrap();
        assert_eq!(q.get_one::<String>("server").unwrap(), "http://a:1");
        assert!(q.get_flag("json"));
        let m = parsed(&["haneul", "--token-file=/t", "award", "list", "--json"]);
        let l = m
            .subcommand_matches("award")
            .and_then(|a| a.subcommand_matches("list"))
            .unwrap();
        assert_eq!(
            l.get_one::<std::path::PathBuf>("token_file").unwrap(),
            std::path::Path::new("/t")
        );
        // What follows `--` is the job's command, left as it is.
        let argv: Vec<std::ffi::OsString> = [
            "haneul", "--json", "submit", "--gpus", "1", "--", "echo", "--server",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let moved = hoist_connection_options(argv, &command());
        assert_eq!(
            moved,
            [
                "haneul", "submit", "--json", "--gpus", "1", "--", "echo", "--server"
            ]
            .map(std::ffi::OsString::from)
        );
        // Nothing to move: argv as given.
        let argv: Vec<std::ffi::OsString> = ["haneul", "queue", "--json"].map(Into::into).into();
        assert_eq!(hoist_connection_options(argv.clone(), &command()), argv);
    }

    /// The quick parse reads every argument as the whole tree does, and leaves to it what it
    /// must not answer itself.
    #[test]
    fn quick_parse_agrees_with_the_whole_tree() {
        let cases: &[&[&str]] = &[
            &["haneul", "submit", "--gpus", "1", "--", "sleep", "60"],
            &[
                "haneul", "submit", "--gpus", "16", "--nodes", "2", "--time", "2h", "--name",
                "llm", "--json", "--", "torchrun", "train.py", "--server", "x",
            ],
            &[
                "haneul",
                "submit",
                "job.toml",
                "--time",
                "30m",
                "--project",
                "3",
            ],
            &[
                "haneul",
                "submit",
                "--array",
                "0-9%2",
                "--gpus",
                "1",
                "--dependency",
                "afterok:41",
                "--server",
                "http://a:1",
                "--token-file",
                "/t",
                "--",
                "true",
            ],
            &[
                "haneul", "queue", "--state", "running", "--limit", "10", "--json",
            ],
            &["haneul", "show", "42_7", "--json"],
            &["haneul", "cancel", "42", "--reason", "done early"],
            &["haneul", "logs", "-f", "42"],
        ];
        for case in cases {
            let argv: Vec<std::ffi::OsString> = case.iter().map(Into::into).collect();
            let mut quick = quick_command(case[1]).unwrap();
            let quick = quick.try_get_matches_from_mut(&argv).unwrap();
            let full = parsed(case);
            assert_eq!(
                quick.subcommand(),
                full.subcommand(),
                "quick and full parses differ for {case:?}"
            );
            assert!(
                quick_parse(&argv).is_some(),
                "{case:?} left to the full tree"
            );
        }
        // Help, version, leading options, other commands and mistakes go to the whole tree.
        let left: &[&[&str]] = &[
            &["haneul", "submit", "--help"],
            &["haneul", "submit", "-h"],
            &["haneul", "--version"],
            &["haneul", "--server", "http://a:1", "submit", "--", "true"],
            &["haneul", "usage"],
            &["haneul", "submit", "--gpus", "many", "--", "true"],
            &["haneul", "queue", "--no-such-flag"],
            &["haneul", "help", "submit"],
            &["haneul"],
        ];
        for case in left {
            let argv: Vec<std::ffi::OsString> = case.iter().map(Into::into).collect();
            assert!(quick_parse(&argv).is_none(), "{case:?} parsed quickly");
        }
    }

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let here = format!("{path} {}", cmd.get_name());
        let has = cmd
            .get_after_help()
            .is_some_and(|h| h.to_string().contains("Examples:"));
        if !has {
            missing.push(here.clone());
        }
        for s in cmd.get_subcommands() {
            if s.get_name() != "help" {
                walk(s, &here, missing);
            }
        }
    }

    #[test]
    fn every_command_has_examples() {
        let cmd = command_in(i18n::Lang::En);
        cmd.clone().debug_assert();
        command_in(i18n::Lang::Ko).debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
    }
}
