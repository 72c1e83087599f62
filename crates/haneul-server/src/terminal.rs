//! Interactive jobs' terminals (docs/interactive.md): the server pairs the owner's websocket
//! (`GET /v1/jobs/{id}/terminal`) with the agent's (`GET /v1/agent/nodes/{id}/terminal`, which
//! the agent opens, as it opens every connection) and relays frames of
//! [`haneul_api::terminal`] both ways, bounded in size and rate.
//!
//! This module owns the sessions: one per interactive job, in this server's memory (agents and
//! users reach the leader). Output that arrives while nobody is attached is kept, the last
//! [`BUFFER`] bytes of it, and replayed to the next attach. A job whose owner has been away
//! longer than the grace period ([`Hub::new`], `--terminal-grace`) is cancelled, as is one
//! whose session never saw its owner for that long.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Id, Q};
use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::Response;
use haneul_api::ErrorBody;
use haneul_api::terminal::{Frame, MAX_FRAME};
use haneul_store as st;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Output kept for a user who is not attached: the last 64 KiB.
pub const BUFFER: usize = 64 * 1024;
/// Default time an interactive job waits for its owner to come back.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Keystrokes (and pastes) towards the task: bytes a second, and the burst allowed above it.
const INPUT_RATE: f64 = 256.0 * 1024.0;
const INPUT_BURST: f64 = 1024.0 * 1024.0;
/// Output towards the user: bytes a second, and the burst.
const OUTPUT_RATE: f64 = 8.0 * 1024.0 * 1024.0;
const OUTPUT_BURST: f64 = 16.0 * 1024.0 * 1024.0;
/// Frames queued towards one side before the relay waits (and so slows the other side).
const QUEUE: usize = 64;
/// A ping this often finds a peer that vanished without closing (a laptop's lid shut).
const PING_EVERY: Duration = Duration::from_secs(20);
/// No frame, pong included, for this long: the peer is gone.
const SILENT_LIMIT: Duration = Duration::from_secs(60);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(user_terminal))
        .routes(routes!(agent_terminal))
}

/// One interactive job's terminal.
struct Session {
    /// The attempt whose task the agent side belongs to.
    fence: i64,
    /// Frames towards the agent, and which connection they go to.
    agent: Option<(u64, mpsc::Sender<Frame>)>,
    /// Frames towards the user, and which connection they go to.
    user: Option<(u64, mpsc::Sender<Frame>)>,
    /// Output while nobody is attached, oldest first, at most [`BUFFER`] bytes.
    kept: VecDeque<u8>,
    /// Since when nobody has been attached; `None` while someone is.
    away_since: Option<Instant>,
    /// The program's exit status, once the agent said it.
    exit: Option<i32>,
}

impl Session {
    fn new(fence: i64) -> Self {
        Session {
            fence,
            agent: None,
            user: None,
            kept: VecDeque::new(),
            away_since: Some(Instant::now()),
            exit: None,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(BUFFER)..];
        let over = (self.kept.len() + bytes.len()).saturating_sub(BUFFER);
        self.kept.drain(..over);
        self.kept.extend(bytes);
    }
}

/// Every terminal session of this server.
#[derive(Debug)]
pub struct Hub {
    grace: Duration,
    sessions: Mutex<BTreeMap<i64, Session>>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("fence", &self.fence)
            .field("agent", &self.agent.is_some())
            .field("user", &self.user.is_some())
            .field("kept", &self.kept.len())
            .field("exit", &self.exit)
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(DEFAULT_GRACE)
    }
}

impl Hub {
    /// A hub that cancels a job once its owner has been away for `grace`.
    pub fn new(grace: Duration) -> Self {
        Hub {
            grace,
            sessions: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Session>> {
        self.sessions.lock().expect("not poisoned")
    }

    /// Attaches the agent side of `job`'s attempt `fence`: frames for it go to the returned
    /// receiver. A connection of an earlier attempt, or an earlier connection of this one, is
    /// replaced.
    fn attach_agent(&self, job: i64, fence: i64, conn: u64) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut sessions = self.lock();
        let s = sessions.entry(job).or_insert_with(|| Session::new(fence));
        if s.fence != fence {
            // A new attempt: a new shell, nothing of the old one carries over.
            let user = s.user.take();
            *s = Session::new(fence);
            if let Some(u) = user {
                s.user = Some(u);
                s.away_since = None;
            }
        }
        s.agent = Some((conn, tx));
        rx
    }

    /// Attaches a user to `job`: the output kept meanwhile, then the exit if known, are queued
    /// first. A user attached already is told and let go.
    fn attach_user(&self, job: i64, conn: u64) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut sessions = self.lock();
        // A session made here (the agent has not connected yet) takes the agent's fence then.
        let s = sessions.entry(job).or_insert_with(|| Session::new(0));
        if let Some((_, old)) = s.user.take() {
            let _ = old.try_send(Frame::Notice(
                "attached from elsewhere; this connection is closed".into(),
            ));
        }
        let kept: Vec<u8> = s.kept.drain(..).collect();
        // The queue is new and the kept output at most BUFFER bytes: it fits, with the exit.
        for chunk in kept.chunks(haneul_api::terminal::MAX_DATA) {
            let _ = tx.try_send(Frame::Data(chunk.to_vec()));
        }
        if let Some(code) = s.exit {
            let _ = tx.try_send(Frame::Exit(code));
        }
        s.user = Some((conn, tx));
        s.away_since = None;
        rx
    }

    fn detach_agent(&self, job: i64, conn: u64) {
        if let Some(s) = self.lock().get_mut(&job)
            && s.agent.as_ref().is_some_and(|(c, _)| *c == conn)
        {
            s.agent = None;
        }
    }

    fn detach_user(&self, job: i64, conn: u64) {
        if let Some(s) = self.lock().get_mut(&job)
            && s.user.as_ref().is_some_and(|(c, _)| *c == conn)
        {
            s.user = None;
            s.away_since = Some(Instant::now());
        }
    }

    /// Where output from the agent goes: the user's queue, or (nobody attached) the buffer,
    /// in which case `None`.
    fn output_of_agent(&self, job: i64, frame: Frame) -> Option<(mpsc::Sender<Frame>, Frame)> {
        let mut sessions = self.lock();
        let s = sessions.get_mut(&job)?;
        if let Frame::Exit(code) = frame {
            s.exit = Some(code);
        }
        match &s.user {
            Some((_, tx)) => Some((tx.clone(), frame)),
            None => {
                if let Frame::Data(d) = &frame {
                    s.keep(d);
                }
                None
            }
        }
    }

    fn agent_queue(&self, job: i64) -> Option<mpsc::Sender<Frame>> {
        self.lock()
            .get(&job)
            .and_then(|s| s.agent.as_ref().map(|(_, tx)| tx.clone()))
    }

    /// Jobs whose owner has been away past the grace while their program runs; their
    /// sessions are forgotten. Sessions that ended and have nobody attached go too.
    fn sweep(&self, now: Instant) -> Vec<i64> {
        let mut overdue = Vec::new();
        self.lock().retain(|job, s| {
            let away = s
                .away_since
                .is_some_and(|t| now.duration_since(t) >= self.grace);
            if s.exit.is_some() {
                // Kept a while for an attach that comes for the exit status.
                return !away;
            }
            if away {
                overdue.push(*job);
                return false;
            }
            true
        });
        overdue
    }

    /// Forgets `job`'s session (the job ended or was cancelled).
    fn forget(&self, job: i64) {
        self.lock().remove(&job);
    }

    /// Whether `job`'s program has exited and its session is still kept.
    pub fn exited(&self, job: i64) -> bool {
        self.lock().get(&job).is_some_and(|s| s.exit.is_some())
    }

    /// Whether `job` has a session (tests, metrics).
    pub fn has_session(&self, job: i64) -> bool {
        self.lock().contains_key(&job)
    }
}

/// Cancels interactive jobs whose owner stayed away past the grace, twice a second, until the
/// server shuts down.
pub async fn sweep(s: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for job in s.terminals.sweep(Instant::now()) {
            let why = format!(
                "interactive session without its owner for {} s (the grace period)",
                s.terminals.grace().as_secs()
            );
            let actor = st::Actor::system("terminal").because(Some(&why));
            match s.store.cancel_job(&actor, job, s.clock.now_ms()).await {
                Ok(_) => {
                    tracing::info!(job, "interactive job cancelled: its owner stayed away");
                    s.signals.wake.notify_one();
                    s.signals.assignments_changed();
                }
                Err(e) => tracing::debug!(job, "cannot cancel the interactive job: {e}"),
            }
            s.terminals.forget(job);
        }
    }
}

/// A token bucket over bytes: `take` waits while the bucket is in debt.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    async fn take(&mut self, n: usize) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / self.rate)).await;
        }
    }
}

/// The websocket upgrade, or a JSON 400 saying how to connect.
fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::bad(
            "upgrade",
            format!("connect with a websocket client (haneul attach): {e}"),
        )
    })?;
    Ok(ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME))
}

/// A standby cannot relay: the agent's side is on the leader.
fn on_leader(s: &AppState) -> Result<(), ApiError> {
    if s.signals.leader.load(Ordering::SeqCst) {
        return Ok(());
    }
    match s.signals.leader_url.lock().expect("not poisoned").clone() {
        Some(url) => Err(ApiError::NotLeader(url)),
        None => Ok(()),
    }
}

/// Attach to an interactive job's terminal (a websocket of [`haneul_api::terminal`] frames).
/// Only the job's owner or a centre administrator may; the job must be interactive and
/// running. Output printed while nobody was attached (its last 64 KiB) comes first. A second
/// attach takes the terminal over from the first.
#[utoipa::path(get, path = "/v1/jobs/{id}/terminal", tag = "jobs",
    params(("id" = i64, Path, description = "job id", minimum = 1)),
    responses((status = 101, description = "switching to the websocket"),
        (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn user_terminal(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.person()?;
    let (job, _) = crate::routes::visible_job(&s, &caller, id).await?;
    if job.user_id != caller.0.id && caller.role() != st::Role::CentreAdmin {
        return Err(ApiError::forbidden(
            "only the job's owner or a centre administrator may attach to its terminal",
        ));
    }
    if !job.interactive {
        return Err(ApiError::Conflict {
            field: "id".into(),
            reason: format!("job {id} is not interactive; `haneul logs {id}` prints its output"),
        });
    }
    match job.state {
        st::JobState::Running | st::JobState::Stopping => {}
        st::JobState::Queued => {
            return Err(ApiError::Conflict {
                field: "id".into(),
                reason: format!("job {id} has not started yet; attach once it runs"),
            });
        }
        // Ended, but this server still holds its last output and exit status: a program
        // that ended before its owner attached is still seen to end.
        _ if s.terminals.exited(id) => {}
        other => {
            return Err(ApiError::Conflict {
                field: "id".into(),
                reason: format!("job {id} has ended ({other})"),
            });
        }
    }
    on_leader(&s)?;
    let ws = upgrade(ws)?;
    let hub = s.clone();
    Ok(ws.on_upgrade(move |socket| user_side(hub, id, socket)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TaskQuery {
    /// The interactive job.
    #[param(minimum = 1)]
    job: i64,
    /// The attempt's fence.
    #[param(minimum = 1)]
    fence: i64,
    /// The task's index (0: interactive jobs have one task).
    #[param(minimum = 0)]
    task: i64,
}

/// The agent's side of an interactive task's terminal (a websocket of
/// [`haneul_api::terminal`] frames): the task must be one of the node's assignments, of an
/// interactive job, with the attempt's fence.
#[utoipa::path(get, path = "/v1/agent/nodes/{id}/terminal", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1), TaskQuery),
    responses((status = 101, description = "switching to the websocket"),
        (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn agent_terminal(
    State(s): State<AppState>,
    caller: Caller,
    Id(node): Id,
    Q(q): Q<TaskQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    crate::agent::own_node(&s, &caller, node).await?;
    let ours = s.store.assignments(node).await?.into_iter().any(|a| {
        a.job.id == q.job && a.attempt.fence == q.fence && a.task == q.task && a.job.interactive
    });
    if !ours {
        return Err(ApiError::Conflict {
            field: "job".into(),
            reason: format!(
                "task {} of job {} (attempt {}) is not an interactive task of this node",
                q.task, q.job, q.fence
            ),
        });
    }
    on_leader(&s)?;
    let ws = upgrade(ws)?;
    Ok(ws.on_upgrade(move |socket| agent_side(s, q.job, q.fence, socket)))
}

/// Why a relay loop ended.
enum End {
    /// The peer closed or vanished.
    Gone,
    /// The peer sent what the protocol does not allow.
    Refused(String),
    /// Another connection took this one's place, or the session ended.
    Replaced,
}

/// Which end of a session a connection is.
#[derive(Clone, Copy)]
enum Side {
    User,
    Agent,
}

/// Relays one user's connection until it ends.
async fn user_side(s: AppState, job: i64, mut socket: WebSocket) {
    let conn = s.terminals.conn_id();
    let mut queue = s.terminals.attach_user(job, conn);
    let end = relay(&s.terminals, job, Side::User, &mut socket, &mut queue).await;
    s.terminals.detach_user(job, conn);
    finish(socket, end).await;
}

/// Relays the agent's connection until it ends.
async fn agent_side(s: AppState, job: i64, fence: i64, mut socket: WebSocket) {
    let conn = s.terminals.conn_id();
    let mut queue = s.terminals.attach_agent(job, fence, conn);
    let end = relay(&s.terminals, job, Side::Agent, &mut socket, &mut queue).await;
    s.terminals.detach_agent(job, conn);
    finish(socket, end).await;
}

/// Passes one frame from `side` on: keys and resizes from the user to the agent (at the
/// input rate), output and the exit from the agent to the user or the buffer (at the output
/// rate). Anything else is the peer breaking the protocol.
async fn incoming(
    hub: &Hub,
    job: i64,
    side: Side,
    frame: Frame,
    bucket: &mut Bucket,
) -> Result<(), String> {
    match (side, &frame) {
        (Side::User, Frame::Data(d)) => bucket.take(d.len()).await,
        (Side::User, Frame::Resize { .. }) => bucket.take(4).await,
        (Side::User, _) => return Err("only data and resize frames go towards the task".into()),
        (Side::Agent, Frame::Data(d)) => bucket.take(d.len()).await,
        (Side::Agent, Frame::Exit(_)) => {}
        (Side::Agent, _) => return Err("only data and exit frames come from the task".into()),
    }
    match side {
        Side::User => {
            // Typed while the agent reconnects: lost, as on a dropped ssh session.
            if let Some(tx) = hub.agent_queue(job) {
                let _ = tx.send(frame).await;
            }
        }
        Side::Agent => {
            if let Some((tx, frame)) = hub.output_of_agent(job, frame) {
                // Waits while the user's queue is full: the task's output slows to the user's
                // pace instead of piling up here.
                let _ = tx.send(frame).await;
            }
        }
    }
    Ok(())
}

/// Moves frames between `socket` and the hub until either side ends: frames from the socket
/// through [`incoming`], frames on `queue` to the socket. Pings find a peer that vanished.
async fn relay(
    hub: &Hub,
    job: i64,
    side: Side,
    socket: &mut WebSocket,
    queue: &mut mpsc::Receiver<Frame>,
) -> End {
    let mut bucket = match side {
        Side::User => Bucket::new(INPUT_RATE, INPUT_BURST),
        Side::Agent => Bucket::new(OUTPUT_RATE, OUTPUT_BURST),
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            msg = socket.recv() => {
                heard = Instant::now();
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Text(_))) => {
                        return End::Refused("terminal frames are binary messages".into())
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Gone,
                };
                let frame = match Frame::decode(&bytes) {
                    Ok(f) => f,
                    Err(e) => return End::Refused(e.to_string()),
                };
                if let Err(why) = incoming(hub, job, side, frame, &mut bucket).await {
                    return End::Refused(why);
                }
            }
            frame = queue.recv() => {
                let Some(frame) = frame else { return End::Replaced };
                if socket.send(Message::Binary(frame.encode().into())).await.is_err() {
                    return End::Gone;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_LIMIT {
                    return End::Gone;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }
}

/// Closes the socket, saying why when the peer broke the protocol.
async fn finish(mut socket: WebSocket, end: End) {
    use axum::extract::ws::CloseFrame;
    let frame = match end {
        End::Gone => return,
        End::Refused(why) => CloseFrame {
            code: axum::extract::ws::close_code::POLICY,
            reason: why.chars().take(120).collect::<String>().into(),
        },
        End::Replaced => CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "the session was taken over or has ended".into(),
        },
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_kept_while_away_and_replayed_once() {
        let hub = Hub::new(Duration::from_secs(60));
        let _agent = hub.attach_agent(5, 1, 1);
        assert!(
            hub.output_of_agent(5, Frame::Data(b"$ ".to_vec()))
                .is_none()
        );
        assert!(
            hub.output_of_agent(5, Frame::Data(vec![b'x'; BUFFER]))
                .is_none()
        );
        let mut user = hub.attach_user(5, 2);
        let mut got = Vec::new();
        while let Ok(Frame::Data(d)) = user.try_recv() {
            got.extend(d);
        }
        // Only the last BUFFER bytes are kept.
        assert_eq!(got, vec![b'x'; BUFFER]);
        // Attached now: output goes to the user, not the buffer.
        assert!(
            hub.output_of_agent(5, Frame::Data(b"hi".to_vec()))
                .is_some()
        );
        hub.detach_user(5, 2);
        let mut again = hub.attach_user(5, 3);
        assert!(again.try_recv().is_err(), "nothing kept while attached");
    }

    #[tokio::test]
    async fn a_second_attach_takes_over() {
        let hub = Hub::new(Duration::from_secs(60));
        let mut first = hub.attach_user(9, 1);
        let _second = hub.attach_user(9, 2);
        assert!(matches!(first.recv().await, Some(Frame::Notice(_))));
        assert!(first.recv().await.is_none(), "first let go");
        // The first's late detach does not detach the second.
        hub.detach_user(9, 1);
        assert!(hub.lock()[&9].away_since.is_none());
    }

    #[tokio::test]
    async fn the_grace_counts_from_the_last_detach() {
        let hub = Hub::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let _agent = hub.attach_agent(3, 1, 1);
        let _user = hub.attach_user(3, 2);
        assert!(
            hub.sweep(t0 + Duration::from_secs(30)).is_empty(),
            "attached"
        );
        hub.detach_user(3, 2);
        let left = Instant::now();
        assert!(hub.sweep(left + Duration::from_secs(9)).is_empty());
        assert_eq!(hub.sweep(left + Duration::from_secs(10)), vec![3]);
        assert!(!hub.has_session(3));
        // Never attached at all: counted from the session's start.
        let _agent = hub.attach_agent(4, 1, 3);
        assert_eq!(hub.sweep(Instant::now() + Duration::from_secs(11)), vec![4]);
        // Ended: never cancelled, forgotten after the grace.
        let _agent = hub.attach_agent(6, 1, 4);
        hub.output_of_agent(6, Frame::Exit(0));
        assert!(
            hub.sweep(Instant::now() + Duration::from_secs(11))
                .is_empty()
        );
        assert!(!hub.has_session(6));
    }

    #[tokio::test]
    async fn a_new_attempt_starts_afresh() {
        let hub = Hub::new(Duration::from_secs(60));
        let _a = hub.attach_agent(7, 1, 1);
        hub.output_of_agent(7, Frame::Data(b"old".to_vec()));
        hub.output_of_agent(7, Frame::Exit(137));
        let _b = hub.attach_agent(7, 2, 2);
        let mut user = hub.attach_user(7, 3);
        assert!(user.try_recv().is_err(), "nothing of attempt 1");
    }

    #[tokio::test]
    async fn the_bucket_holds_the_rate() {
        let mut b = Bucket::new(10_000.0, 1000.0);
        let t0 = Instant::now();
        b.take(1000).await;
        assert!(
            t0.elapsed() < Duration::from_millis(50),
            "the burst is free"
        );
        b.take(500).await;
        b.take(500).await;
        // 1000 bytes past the burst at 10,000 a second: about 100 ms.
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
    }
}
