//! Haneul node agent library.
//!
//! This crate owns what happens on one GPU node: finding the node's GPUs ([`gpus`], through
//! [`nvml`] or `nvidia-smi`), checking its health ([`health`], with XID events from [`xid`])
//! and running the tasks of an attempt as isolated process groups ([`launch`]): their
//! environment, their log files, their resource limits, their stop protocol (checkpoint file,
//! SIGTERM to the group, grace, SIGKILL) and their time limits, and their CPU and memory
//! allotment ([`limits`]: cgroup v2, cgroup v1 or rlimits); a task may run in a container
//! instead ([`container`]: podman or apptainer). Tasks run as their owners' Unix ids
//! ([`identity`]); fractional GPUs are shared through CUDA MPS and MIG instances are reported
//! as GPUs of their own ([`sharing`]). The protocol with the server (registration,
//! heartbeats, assignments, reports, log upload, recovery after a restart) is [`node`], over a
//! [`node::Transport`] whose real form speaks HTTP through `haneul-client`. Every GPU a task
//! holds is sampled and the samples sent in batches ([`telemetry`]). Tasks also get Slurm's
//! environment ([`slurm`]), so batch scripts written for Slurm run.
//! See `docs/agent.md`.

pub mod container;
pub mod gpus;
pub mod health;
pub mod identity;
pub mod launch;
pub mod limits;
pub mod logs;
pub mod node;
pub mod nvml;
pub mod sharing;
pub mod slurm;
pub mod telemetry;
pub mod xid;

/// Errors of the agent library.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `--simulate-gpus` was given something other than `COUNTxMODEL`.
    #[error(
        "invalid --simulate-gpus value {value:?}: {reason} (expected COUNTxMODEL, e.g. 8xH200)"
    )]
    SimulatedGpus {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of `nvidia-smi` output could not be read.
    #[error("cannot parse nvidia-smi output line {line:?}: {reason}")]
    NvidiaSmi {
        /// The offending line.
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A task specification is unusable.
    #[error("invalid task spec: {0}")]
    Spec(String),
    /// A task's account is refused, or the agent's mode does not fit its own account.
    #[error("{0}")]
    Identity(String),
    /// A call to the server failed in a way worth retrying: no answer, or a 5xx (a standby
    /// that is not the leader answers 503).
    #[error("{0}")]
    Transient(String),
    /// The server refused a call (4xx, e.g. 409 for a stale fence): retrying will not help.
    /// Status 0: no answer worth retrying either (a certificate this agent does not trust).
    #[error("{}", refused_text(*status, message))]
    Refused {
        /// The HTTP status, 0 when there was no answer.
        status: u16,
        /// The server's error answer, or why there was none.
        message: String,
    },
    /// The agent could not join the centre (registration or its first calls failed).
    #[error("{0}")]
    Join(String),
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io {
            what: what.into(),
            source,
        }
    }
}

fn refused_text(status: u16, message: &str) -> String {
    if status == 0 {
        message.to_string()
    } else {
        format!("refused with {status}: {message}")
    }
}

/// Result type of the agent library.
pub type Result<T> = std::result::Result<T, AgentError>;
