//! The `haneul` binary. Each role is a subcommand with its own module.

mod agent;
mod bench;
mod bench_agent;
mod bench_engine;
mod client;
mod plan;
mod server;
mod sim;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "haneul",
    version,
    about = "Control plane for shared national GPU centres"
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
    /// Cancel a job (like scancel).
    Cancel(client::CancelArgs),
    /// GPU-hours used per project and GPU model (like sacct).
    Usage(client::UsageArgs),
}

/// Errors are printed as one line with their causes (`error: what: why`), never as a panic or a
/// backtrace, and the exit status is 1.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
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
        Command::Up(args) => up::run(args),
        Command::Submit(args) => client::submit(args),
        Command::Queue(args) => client::queue(args),
        Command::Show(args) => client::show(args),
        Command::Logs(args) => client::logs(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Usage(args) => client::usage(args),
    }
}
