//! JupyterLab sessions started from the portal (docs/jupyter.md). This module owns what the
//! server knows of them outside the store: the command a session's job runs, and where each
//! running session's server listens (its node's address, the port and the secret token its
//! task chose), as the node's agent reported it at `POST /v1/agent/nodes/{id}/endpoints`.
//!
//! A session is an ordinary job (submitted through `/v1/jobs` like any other, with the same
//! checks), named [`SESSION_NAME`]. Its command picks a free port and a random token, writes
//! them to `HANEUL_ENDPOINT_FILE` for the agent, and starts `jupyter lab` on the node's address
//! with the portal's path as its base URL. The portal's proxy (`portal/sessions.rs`) adds the
//! token to what it forwards, so the user never sees it; it is not in the job's command, its
//! logs or any API answer.
//!
//! The endpoints live in this server's memory, like terminal sessions: the agent sends each one
//! again every 30 s, so a restarted server or a new leader knows it again within that time.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Body};
use crate::extract::Id;
use axum::extract::State;
use haneul_api::{ErrorBody, TaskEndpoint};
use haneul_store as st;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The name of a portal session's job: how the portal tells sessions from other jobs.
pub const SESSION_NAME: &str = "jupyter-lab";
/// Default idle time after which a session's kernels are culled and its server (and so its
/// job) ends: `haneul server --jupyter-idle`.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(3600);
/// Most sessions' endpoints kept; past it, a report for a new job is refused (each needs a
/// running job, so this is far above what a centre runs).
const MAX_ENDPOINTS: usize = 100_000;

/// Where one session's server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The attempt whose task reported it: a newer attempt's report replaces it.
    pub fence: i64,
    pub node: i64,
    /// The node's address (or name) as the server knows it; never the task's word.
    pub host: String,
    pub port: u16,
    pub token: String,
}

/// Every session endpoint this server has been told of, by job.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_job: Mutex<BTreeMap<i64, Endpoint>>,
}

impl Endpoints {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Endpoint>> {
        self.by_job.lock().expect("not poisoned")
    }

    /// Records `job`'s endpoint unless one of a later attempt is known. False when full.
    pub fn put(&self, job: i64, e: Endpoint) -> bool {
        let mut m = self.lock();
        match m.get(&job) {
            Some(old) if old.fence > e.fence => return true,
            None if m.len() >= MAX_ENDPOINTS => return false,
            _ => {}
        }
        m.insert(job, e);
        true
    }

    /// `job`'s endpoint for attempt `fence`.
    pub fn get(&self, job: i64, fence: i64) -> Option<Endpoint> {
        self.lock().get(&job).filter(|e| e.fence == fence).cloned()
    }

    pub fn forget(&self, job: i64) {
        self.lock().remove(&job);
    }

    fn jobs(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }
}

/// Forgets the endpoints of jobs that have ended, once a minute, until the server stops.
pub async fn sweep(s: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for job in s.endpoints.jobs() {
            match s.store.get_job(job).await {
                Ok(j) if !j.state.is_terminal() => {}
                Ok(_) | Err(st::StoreError::NotFound { .. }) => s.endpoints.forget(job),
                Err(_) => {}
            }
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(endpoint))
}

/// What the server accepts as a task's token: 16 to 128 characters `A-Za-z0-9-_` (the same
/// rule as the agent's).
fn token_ok(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where a running task's web server listens (a JupyterLab session's): the port and token the
/// task wrote to `HANEUL_ENDPOINT_FILE`. The task must be one of this node's running
/// assignments with the attempt's fence; the host is the node's address.
#[utoipa::path(post, path = "/v1/agent/nodes/{id}/endpoints", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    request_body = TaskEndpoint,
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn endpoint(
    State(s): State<AppState>,
    caller: Caller,
    Id(node): Id,
    Body(b): Body<TaskEndpoint>,
) -> Result<axum::http::StatusCode, ApiError> {
    crate::agent::own_node(&s, &caller, node).await?;
    if b.port < 1024 {
        return Err(ApiError::bad("port", "must be 1024 to 65535"));
    }
    if !token_ok(&b.token) {
        return Err(ApiError::bad(
            "token",
            "must be 16 to 128 characters of A-Z a-z 0-9 - _",
        ));
    }
    let Some(a) = s
        .store
        .assignments(node)
        .await?
        .into_iter()
        .find(|a| a.job.id == b.job && a.attempt.fence == b.fence && a.task == b.task)
    else {
        return Err(ApiError::Conflict {
            field: "job".into(),
            reason: format!(
                "task {} of job {} (attempt {}) is not running on this node",
                b.task, b.job, b.fence
            ),
        });
    };
    let host =
        a.peers.get(a.task as usize).cloned().ok_or_else(|| {
            ApiError::Internal(format!("job {} has no address for its task", b.job))
        })?;
    let kept = s.endpoints.put(
        b.job,
        Endpoint {
            fence: b.fence,
            node,
            host,
            port: b.port,
            token: b.token,
        },
    );
    if !kept {
        return Err(ApiError::Conflict {
            field: "job".into(),
            reason: "too many session endpoints on this server".into(),
        });
    }
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Characters a Python environment's path may hold in a session's command: enough for real
/// paths, none that the shell would read.
pub fn environment_ok(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 1024
        && !path.split('/').any(|p| p == "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
}

/// The shell command of a session's task. `environment` (checked by [`environment_ok`]) is a
/// Python environment on the nodes whose `bin` goes first on `PATH`; `idle` is how long the
/// server may sit idle before its kernels are culled and it shuts down, ending the job.
///
/// The port is picked by binding port 0 on the node's address; `port_retries=0` makes Jupyter
/// fail rather than move to another port than the one published. The token is made on the node
/// and given to Jupyter in its environment (not its arguments, which `ps` shows to everyone on
/// the node); Jupyter then prints `?token=...` in its log instead of it.
pub fn command(environment: Option<&str>, idle: Duration) -> String {
    let idle = idle.as_secs().max(60);
    let cull_every = idle.min(300);
    let path = match environment {
        Some(env) => format!("PATH='{env}/bin':\"$PATH\"; export PATH\n"),
        None => String::new(),
    };
    format!(
        "set -e\n\
         {path}\
         umask 077\n\
         addr=\"${{HANEUL_NODE_ADDRESS:-127.0.0.1}}\"\n\
         JUPYTER_TOKEN=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"\n\
         export JUPYTER_TOKEN\n\
         port=\"$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' \"$addr\")\"\n\
         printf '%s %s\\n' \"$port\" \"$JUPYTER_TOKEN\" > \"$HANEUL_ENDPOINT_FILE.new\"\n\
         mv \"$HANEUL_ENDPOINT_FILE.new\" \"$HANEUL_ENDPOINT_FILE\"\n\
         exec jupyter lab --no-browser --ip=\"$addr\" --port=\"$port\" \
         --ServerApp.port_retries=0 \
         --ServerApp.base_url=\"/portal/sessions/$HANEUL_JOB_ID/\" \
         --ServerApp.allow_remote_access=True \
         --ServerApp.websocket_ping_interval=30 \
         --LabApp.news_url=None \
         --LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate \
         --ServerApp.shutdown_no_activity_timeout={idle} \
         --MappingKernelManager.cull_idle_timeout={idle} \
         --MappingKernelManager.cull_interval={cull_every} \
         --MappingKernelManager.cull_connected=True \
         --TerminalManager.cull_inactive_timeout={idle} \
         --TerminalManager.cull_interval={cull_every}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_latest_attempt() {
        let e = Endpoints::default();
        let at = |fence, port| Endpoint {
            fence,
            node: 1,
            host: "n1".into(),
            port,
            token: "t".repeat(20),
        };
        assert!(e.put(7, at(2, 9000)));
        assert!(e.put(7, at(1, 9001)), "a stale report is dropped quietly");
        assert_eq!(e.get(7, 2).map(|x| x.port), Some(9000));
        assert_eq!(e.get(7, 1), None, "an older attempt's endpoint is gone");
        assert!(e.put(7, at(3, 9002)));
        assert_eq!(e.get(7, 3).map(|x| x.port), Some(9002));
        e.forget(7);
        assert_eq!(e.get(7, 3), None);
    }

    #[test]
    fn environments_are_plain_absolute_paths() {
        assert!(environment_ok("/opt/envs/torch-2.5"));
        assert!(environment_ok("/home/kim/.venvs/py3.11_lab"));
        for bad in [
            "relative/env",
            "/opt/$(reboot)",
            "/opt/env'; rm -rf ~",
            "/opt/a b",
            "/opt/../etc",
            "/opt/env\n",
        ] {
            assert!(!environment_ok(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_command_carries_the_idle_time_and_never_a_token() {
        let c = command(Some("/opt/lab"), Duration::from_secs(1800));
        assert!(c.starts_with("set -e\nPATH='/opt/lab/bin':\"$PATH\""));
        assert!(c.contains("--ServerApp.shutdown_no_activity_timeout=1800"));
        assert!(c.contains("--MappingKernelManager.cull_idle_timeout=1800"));
        assert!(c.contains("--MappingKernelManager.cull_interval=300"));
        assert!(c.contains("--ServerApp.base_url=\"/portal/sessions/$HANEUL_JOB_ID/\""));
        assert!(
            !c.contains("--IdentityProvider.token"),
            "the token stays off the command line"
        );
        // Below a minute Jupyter's culling would spin: a minute is the least.
        assert!(command(None, Duration::from_secs(5)).contains("cull_idle_timeout=60 "));
    }
}
