//! `haneul`, the command users type: the commands a shell loop runs once per job, in a binary
//! a fraction of `haneul-full`'s size, so that each run starts in a fraction of the time; every
//! other command is handed to `haneul-full` beside it (see [`haneul_cli::front_door`]).

fn main() -> std::process::ExitCode {
    haneul_cli::front_door()
}
