//! The `haneul` binary. Each role is a subcommand with its own module.

mod bench;
mod bench_engine;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
    }
}
