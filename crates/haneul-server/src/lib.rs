//! The Haneul control plane: REST API, authentication and authorisation, the controller loop
//! around the scheduling engine, and Prometheus metrics, over a [`haneul_store::Store`].
//!
//! Modules: [`routes`] (tenant API), [`agent`] (agent protocol), [`auth`] (tokens and the
//! authorisation policy), [`controller`] (lease, engine, decisions), [`metrics`], [`convert`]
//! (records to wire types), [`error`] (the one error type and its HTTP mapping), [`accounting`]
//! (balances, weights, statements, notices), [`calendar`] (the centre's time zone for months
//! and days), [`compliance`] (export screening), [`programmes`] (calls, applications, ranking),
//! [`portal`] (the web pages under /portal), [`serve`] (the listener: TLS, timeouts, connection
//! cap, write rate limits), [`tls`] (certificates, their reload, the local authority of
//! `haneul up --tls`), [`clock`] (the one wall clock every date-dependent decision reads), [`jupyter`]
//! (JupyterLab sessions: their command and where they listen) and
//! [`telemetry`] (GPU samples from agents, job efficiency, DCGM-named gauges, the idle policy).
//! `haneul server` in haneul-cli is a thin wrapper around [`run`].

pub mod accounting;
pub mod agent;
pub mod anchor;
pub mod auth;
pub mod batch;
pub mod calendar;
pub mod clock;
pub mod compliance;
pub mod controller;
pub mod convert;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod identity;
pub mod jupyter;
pub mod metrics;
pub mod oidc;
pub mod portal;
pub mod programmes;
pub mod routes;
pub mod serve;
pub mod telemetry;
pub mod terminal;
pub mod tls;
pub mod validate;

use crate::clock::Clock;
use crate::controller::{Controller, ControllerConfig, Signals};
use crate::error::ApiError;
use crate::metrics::{Metrics, RouteLabel};
use axum::Json;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use haneul_store::{PostgresStore, SqliteStore, Store, StoreError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

/// Most GPUs on one node (the engine's limit, which haneul-model keeps private to its fleet
/// module).
pub const MAX_GPUS_PER_NODE: u32 = 64;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// A standby's answers name the leader's advertised URL in this header.
pub const LEADER_HEADER: &str = "haneul-leader";

/// How long a heartbeat waits for others to share its write. A fleet's heartbeats come steadily
/// but apart (1,250 nodes every 5 s: one each 4 ms), so without a wait each was written alone,
/// in a transaction of its own (six statements on SQLite, a write to its log and the wake-ups
/// around them): the server spent a fifth of a core on an idle fleet's heartbeats.
/// Gathered for 50 ms they are written about a dozen at a time, for under a tenth of a core
/// (docs/benchmarks.md, "Heartbeats gathered"). A node's answer comes that much later, against
/// an interval of seconds and a node timeout of minutes.
const HEARTBEAT_GATHER: std::time::Duration = std::time::Duration::from_millis(50);
/// Heartbeats enough to write at once without waiting longer: at 12,500 nodes (2,500 a second)
/// sixteen come within 7 ms. Waiting the whole 50 ms there gained nothing, as batches were
/// large already, and held each answer that long: the swarm, which sends its nodes' heartbeats
/// one after another on 64 connections, fell to 1,150 a second.
const HEARTBEATS_ENOUGH: usize = 16;

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database: Database,
    pub lease_ttl: Duration,
    pub tick: Duration,
    pub node_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Charging, holding and screening rules (docs/accounting.md).
    pub accounting: accounting::AccountingPolicy,
    /// The base URL clients reach this server at; while it stands by, the others' answers
    /// name it in a `Haneul-Leader` header once it leads.
    pub advertise_url: Option<String>,
    /// Unix id ranges and the container allow-list (docs/server.md).
    pub identity: identity::IdentityPolicy,
    /// HTTPS with these files; `None` is plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// Plain HTTP on an address other than loopback (behind a TLS proxy the operator trusts).
    pub insecure_http: bool,
    /// Timeouts, the connection cap and write rate limits.
    pub limits: serve::Limits,
    /// Bearer token that `/metrics` requires; `None` leaves it open (as Prometheus expects on a
    /// trusted network).
    pub metrics_token: Option<String>,
    /// The audit chain's signing key, checkpoint file and interval.
    pub anchor: anchor::AnchorConfig,
    /// Sessions and token expiry.
    pub sessions: auth::SessionPolicy,
    /// The wall clock of every decision that depends on the date; the system's in production.
    pub clock: clock::SharedClock,
    /// GPU telemetry: the idle policy and the series' retention (docs/telemetry.md).
    pub idle: telemetry::IdlePolicy,
    /// Identity providers people sign in with (docs/oidc.md); none by default.
    pub oidc: oidc::OidcConfig,
    /// How long an interactive job waits for its owner to attach again before it is
    /// cancelled (docs/interactive.md).
    pub terminal_grace: Duration,
    /// How long a JupyterLab session started from the portal may sit idle before its kernels
    /// are culled and its server, and so its job, ends (docs/jupyter.md).
    pub jupyter_idle: Duration,
}

impl Config {
    /// Defaults for a data directory: SQLite inside it, loopback port 8470.
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            database: Database::Sqlite(data_dir.join("haneul.db")),
            anchor: anchor::AnchorConfig::in_dir(&data_dir),
            sessions: auth::SessionPolicy::default(),
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            lease_ttl: Duration::from_secs(3),
            tick: Duration::from_millis(200),
            node_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            accounting: accounting::AccountingPolicy::default(),
            advertise_url: None,
            identity: identity::IdentityPolicy::default(),
            tls: None,
            insecure_http: false,
            limits: serve::Limits::default(),
            metrics_token: None,
            clock: Arc::new(clock::SystemClock),
            idle: telemetry::IdlePolicy::default(),
            oidc: oidc::OidcConfig::default(),
            terminal_grace: terminal::DEFAULT_GRACE,
            jupyter_idle: jupyter::DEFAULT_IDLE,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("accounting policy: {0}")]
    Accounting(String),
    #[error("{0}")]
    Identity(String),
    #[error("oidc: {0}")]
    Oidc(String),
    #[error("tls: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error(
        "refusing plain HTTP on {0}: tokens would cross the network in clear text; give \
         --tls-cert and --tls-key, or --insecure-http when a TLS proxy you trust is in front"
    )]
    Insecure(SocketAddr),
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Submissions, written in group commits.
    pub submits:
        batch::Batcher<(haneul_store::Actor, haneul_store::NewJob), haneul_store::JobRecord>,
    /// Heartbeats, written in group commits.
    pub beats: batch::Batcher<i64, haneul_store::NodeRecord>,
    /// Agents' task reports, written in group commits: a gang's start reports arrive together
    /// from all its nodes, and one commit each made starting a 1,250-node gang take seconds.
    pub reports: batch::Batcher<haneul_store::TaskReport, haneul_store::AttemptRecord>,
    pub tokens: Arc<auth::TokenCache>,
    /// Each project's organisation, as read once (submits check it on every request).
    pub project_orgs: Arc<auth::ProjectOrgs>,
    pub signals: Arc<Signals>,
    pub metrics: Arc<Metrics>,
    pub heartbeat_interval_ms: i64,
    pub accounting: Arc<accounting::AccountingPolicy>,
    pub identity: Arc<identity::IdentityPolicy>,
    /// When set, `/metrics` answers only requests bearing this token.
    pub metrics_token: Option<Arc<str>>,
    /// Sessions and token expiry.
    pub sessions: Arc<auth::SessionPolicy>,
    /// The wall clock of expiry, windows and every time the store records.
    pub clock: clock::SharedClock,
    /// The idle policy (its threshold also says which GPUs a job used).
    pub idle: Arc<telemetry::IdlePolicy>,
    /// Identity providers and the portal's sign-ins in flight (docs/oidc.md).
    pub oidc: Arc<oidc::Oidc>,
    /// Interactive jobs' terminals in relay through this server.
    pub terminals: Arc<terminal::Hub>,
    /// Which agent owns which node, as lately read (agent.rs).
    pub node_owners: Arc<agent::NodeOwners>,
    /// What each node's last long poll read (agent.rs).
    pub poll_memos: Arc<agent::PollMemos>,
    /// Where the portal's JupyterLab sessions listen, as their agents reported it.
    pub endpoints: Arc<jupyter::Endpoints>,
    /// The idle time written into a new session's command.
    pub jupyter_idle: Duration,
}

impl AppState {
    /// State for `store`, with the group-commit workers started (needs a Tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        signals: Arc<Signals>,
        metrics: Arc<Metrics>,
        heartbeat_interval_ms: i64,
    ) -> Self {
        Self::new_with_clock(
            store,
            signals,
            metrics,
            heartbeat_interval_ms,
            Arc::new(clock::SystemClock),
        )
    }

    /// [`AppState::new`] on another clock than the system's (a test's manual one).
    pub fn new_with_clock(
        store: Arc<dyn Store>,
        signals: Arc<Signals>,
        metrics: Arc<Metrics>,
        heartbeat_interval_ms: i64,
        clock: clock::SharedClock,
    ) -> Self {
        let s = store.clone();
        let c = clock.clone();
        let submits = batch::Batcher::spawn(512, move |jobs: Vec<_>| {
            let s = s.clone();
            let now = c.now_ms();
            async move {
                let n = jobs.len();
                match s.submit_jobs(jobs.clone(), now).await {
                    Ok(recs) => recs.into_iter().map(Ok).collect(),
                    // One bad item must not fail its neighbours: write them one by one.
                    Err(e) if n > 1 => {
                        tracing::debug!(error = %e, "batched submit failed; retrying one by one");
                        let mut out = Vec::with_capacity(n);
                        for (actor, job) in jobs {
                            out.push(s.submit_job(&actor, job, now).await.map_err(ApiError::from));
                        }
                        out
                    }
                    Err(e) => vec![Err(e.into())],
                }
            }
        });
        let s = store.clone();
        let c = clock.clone();
        let beats = batch::Batcher::gathering(
            1024,
            HEARTBEAT_GATHER,
            HEARTBEATS_ENOUGH,
            move |nodes: Vec<i64>| {
                let s = s.clone();
                let now = c.now_ms();
                async move {
                    match s.heartbeats(&nodes, now).await {
                        Ok(recs) => recs
                            .into_iter()
                            .zip(&nodes)
                            .map(|(r, n)| r.ok_or_else(|| ApiError::not_found("node", n)))
                            .collect(),
                        Err(e) => {
                            let msg = e.to_string();
                            tracing::error!(error = %msg, "heartbeat batch failed");
                            nodes
                                .iter()
                                .map(|_| Err(ApiError::Internal(msg.clone())))
                                .collect()
                        }
                    }
                }
            },
        );
        let s = store.clone();
        let c = clock.clone();
        let reports = batch::Batcher::spawn(1024, move |reports: Vec<haneul_store::TaskReport>| {
            let s = s.clone();
            let now = c.now_ms();
            async move {
                match s.report_tasks(&reports, now).await {
                    Ok(out) => out.into_iter().map(|r| r.map_err(ApiError::from)).collect(),
                    // The database failed the batch and wrote none of it: one by one, so
                    // each report gets its own answer.
                    Err(e) => {
                        tracing::warn!(error = %e, "batched task reports failed; retrying one by one");
                        let mut out = Vec::with_capacity(reports.len());
                        for r in reports {
                            out.push(s.report_task(r, now).await.map_err(ApiError::from));
                        }
                        out
                    }
                }
            }
        });
        AppState {
            store,
            submits,
            beats,
            reports,
            tokens: Arc::default(),
            project_orgs: Arc::default(),
            signals,
            metrics,
            heartbeat_interval_ms,
            accounting: Arc::default(),
            identity: Arc::default(),
            metrics_token: None,
            sessions: Arc::default(),
            clock,
            idle: Arc::default(),
            oidc: Arc::default(),
            terminals: Arc::default(),
            node_owners: Arc::default(),
            poll_memos: Arc::default(),
            endpoints: Arc::default(),
            jupyter_idle: jupyter::DEFAULT_IDLE,
        }
    }

    /// The same state under another idle policy than the default (off).
    pub fn with_idle(mut self, policy: Arc<telemetry::IdlePolicy>) -> Self {
        self.idle = policy;
        self
    }

    /// The same state under another identity and container policy than the defaults.
    pub fn with_identity(mut self, policy: identity::IdentityPolicy) -> Self {
        self.identity = Arc::new(policy);
        self
    }

    /// The same state under other accounting rules than the defaults.
    pub fn with_accounting(mut self, policy: Arc<accounting::AccountingPolicy>) -> Self {
        self.accounting = policy;
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Haneul control plane",
        description = "REST API of a shared national GPU centre: tenants, access, fleet, jobs, \
                       awards, audit, and the node agent protocol. Authenticate with \
                       `Authorization: Bearer <token>`. Times are Unix milliseconds."
    ),
    paths(healthz),
    modifiers(&BearerAuth),
    tags(
        (name = "access", description = "users and API tokens"),
        (name = "tenants", description = "organisations and projects"),
        (name = "fleet", description = "pools and nodes"),
        (name = "jobs", description = "submit, list, show, cancel, logs"),
        (name = "awards", description = "GPU-hour awards and usage"),
        (name = "audit", description = "the append-only, hash-chained audit log"),
        (name = "agent", description = "node agent protocol"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Health: 200 once the server accepts requests.
#[utoipa::path(get, path = "/healthz", tag = "access",
    responses((status = 200, body = haneul_api::Health)))]
async fn healthz(State(s): State<AppState>) -> Json<haneul_api::Health> {
    Json(haneul_api::Health {
        status: "ok".into(),
        backend: s.store.backend().into(),
        leader: s.signals.leader.load(Ordering::SeqCst),
    })
}

async fn metrics_text(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(want) = &s.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = sent.is_some_and(|t| {
            use sha2::{Digest, Sha256};
            // Compare digests so that the time taken says nothing about the token.
            Sha256::digest(t.as_bytes()) == Sha256::digest(want.as_bytes())
        });
        if !ok {
            return ApiError::Unauthenticated.into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        kind: "route",
        id: "requested".into(),
    }
}

/// Wakes the controller when another server sharing the database commits what concerns it: a
/// leader wakes for events (work to catch up on), a standby for the lease given up or taken (it
/// takes a released lease at once, or learns the new leader). Never a standby for events: each
/// of its steps tries the lease, a write, and the leader commits events all the time. The
/// controller's own tick stays as the fallback.
async fn wake_on_changes(
    mut changes: tokio::sync::broadcast::Receiver<haneul_store::Change>,
    signals: Arc<Signals>,
) {
    use haneul_store::Change;
    use tokio::sync::broadcast::error::RecvError;
    let mut stop = signals.shutdown.subscribe();
    loop {
        let change = tokio::select! {
            got = changes.recv() => match got {
                Ok(c) => Some(c),
                Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        };
        let leading = signals.leader.load(Ordering::SeqCst);
        let concerns = match change {
            Some(Change::Events) => leading,
            Some(Change::Lease) => !leading,
            None => true,
        };
        if concerns {
            signals.wake.notify_one();
        }
    }
}

/// A standby that knows the leader's advertised URL names it in every answer, and refuses
/// writes and agent calls with 503 `not_leader` (the leader's URL in the body too): only the
/// leader's controller is woken by a submit or a report, and only its long polls answer at
/// once, so a write taken here would wait for the leader's next unsignalled look. Reads are
/// served (the database is shared). A standby that knows no leader (none advertises a URL, or
/// none holds the lease) serves everything: what it writes waits in the database for the next
/// leader.
async fn name_leader<F: Future<Output = Response>>(
    s: &AppState,
    req: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    if s.signals.leader.load(Ordering::SeqCst) {
        return next(req).await;
    }
    let url = s.signals.leader_url.lock().expect("not poisoned").clone();
    let Some((url, value)) = url.and_then(|u| {
        let v = header::HeaderValue::from_str(&u).ok()?;
        Some((u, v))
    }) else {
        return next(req).await;
    };
    let path = req.uri().path();
    let write = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let mut answer = if path.starts_with("/v1/agent/") || (write && path.starts_with("/v1/")) {
        ApiError::NotLeader(url).into_response()
    } else {
        next(req).await
    };
    answer.headers_mut().insert(LEADER_HEADER, value);
    answer
}

/// Records API latency by matched route. Every label comes from a closed set: the route is one
/// of the router's templates (never the raw path) and the method one of the standard ones, else
/// `OTHER`, so that no request can add series of its own making.
async fn track<F: Future<Output = Response>>(
    s: &AppState,
    req: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| metrics::OTHER.into());
    let method = metrics::method_label(req.method()).to_string();
    let t0 = Instant::now();
    let resp = next(req).await;
    let label = RouteLabel {
        method,
        route,
        status: resp.status().as_u16().to_string(),
    };
    s.metrics
        .api_latency
        .get_or_create(&label)
        .observe(t0.elapsed().as_secs_f64());
    resp
}

/// Wording errors in the request's language, naming the leader, timing the request and
/// answering a repeated idempotency key, in that order, as one layer around the router (and its
/// panic catch, so that a panic's answer too is worded and timed): each `from_fn` layer is a
/// boxed future of its own around the next, paid by every request in flight, a long poll held
/// for a minute by each of a thousand nodes included.
async fn front(State(s): State<AppState>, req: Request, next: Next) -> Response {
    error::localise(req, |req| {
        name_leader(&s, req, |req| {
            track(&s, req, |req| idempotency::layer(&s, req, next))
        })
    })
    .await
}

fn panic_to_json(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal("panic".into()).into_response()
}

/// A page listing every operation of the OpenAPI document, served without any script from
/// outside (the centre's network may have no Internet).
fn docs_page(api: &utoipa::openapi::OpenApi) -> String {
    let mut rows = String::new();
    for (path, item) in &api.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let summary = op
                .summary
                .clone()
                .or_else(|| op.description.clone())
                .unwrap_or_default();
            let tag = op
                .tags
                .as_ref()
                .and_then(|t| t.first().cloned())
                .unwrap_or_default();
            rows.push_str(&format!(
                "<tr><td>{tag}</td><td><code>{method}</code></td><td><code>{}</code></td><td>{}</td></tr>\n",
                html_escape(path),
                html_escape(&summary)
            ));
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Haneul API</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:.2em .8em;border-bottom:1px solid #ddd}}</style>\
         </head><body><h1>Haneul API</h1><p>The machine-readable description is \
         <a href=\"/openapi.json\">/openapi.json</a>. Send <code>Authorization: Bearer &lt;token&gt;</code>.</p>\
         <table><tr><th>tag</th><th>method</th><th>path</th><th>summary</th></tr>\n{rows}</table></body></html>"
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole HTTP application for `state`.
pub fn app(state: AppState) -> axum::Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(utoipa_axum::routes!(healthz))
        .merge(routes::router())
        .merge(accounting::router())
        .merge(compliance::router())
        .merge(programmes::router())
        .merge(agent::router())
        .merge(telemetry::router())
        .merge(oidc::router())
        .merge(terminal::router())
        .merge(jupyter::router())
        .split_for_parts();
    let mut api = api;
    idempotency::declare(&mut api);
    let spec = Arc::new(api.to_json().unwrap_or_else(|_| "{}".into()));
    let docs = Arc::new(docs_page(&api));
    router
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        (*spec).clone(),
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let docs = docs.clone();
                async move { Html((*docs).clone()) }
            }),
        )
        .route("/metrics", get(metrics_text))
        .merge(portal::router(state.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_json,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        // The catch inside `front` answers a handler's panic in the request's language; this
        // one answers a panic in `front`'s own steps (idempotency, timing, leader naming),
        // which would otherwise drop the connection without an answer.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_json,
        ))
        .with_state(state)
}

/// The OpenAPI document as JSON (for docs and clients generated offline).
pub fn openapi_json() -> String {
    let (_, api) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(utoipa_axum::routes!(healthz))
        .merge(routes::router())
        .merge(accounting::router())
        .merge(compliance::router())
        .merge(programmes::router())
        .merge(agent::router())
        .merge(telemetry::router())
        .merge(oidc::router())
        .merge(terminal::router())
        .merge(jupyter::router())
        .split_for_parts();
    api.to_pretty_json().unwrap_or_default()
}

pub async fn open_store(db: &Database) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match db {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        Database::Postgres(url) => Arc::new(PostgresStore::open(url).await?),
    })
}

/// What the first start did about the administrator token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A new centre-admin token was written here.
    Wrote(PathBuf),
    /// The token file was already there.
    Present(PathBuf),
    /// The database already has users (another server bootstrapped it); no token was written.
    AlreadyInitialised,
}

/// On a fresh database, creates the centre administrator (with a uid from `uid_range`) and
/// writes its token to `DIR/admin.token` (mode 0600). The file is written before the database
/// commit, so a crash in between leaves a token that works rather than a database no one can
/// enter.
pub async fn bootstrap(
    store: &dyn Store,
    data_dir: &Path,
    uid_range: identity::IdRange,
) -> Result<Bootstrap, ServerError> {
    bootstrap_at(store, data_dir, uid_range, clock::SystemClock.now_ms()).await
}

/// [`bootstrap`] with the administrator created at `now` (Unix milliseconds), for a server on
/// another clock than the system's.
pub async fn bootstrap_at(
    store: &dyn Store,
    data_dir: &Path,
    uid_range: identity::IdRange,
    now: i64,
) -> Result<Bootstrap, ServerError> {
    let path = data_dir.join("admin.token");
    if path.exists() {
        return Ok(Bootstrap::Present(path));
    }
    let secret = routes::new_secret();
    write_secret(&path, &secret)?;
    if store
        .bootstrap_admin(&haneul_store::hash_token(&secret), uid_range, now)
        .await?
    {
        Ok(Bootstrap::Wrote(path))
    } else {
        let _ = std::fs::remove_file(&path);
        Ok(Bootstrap::AlreadyInitialised)
    }
}

/// Makes the data directory 0700 and what it already holds (database, WAL, tokens) 0600: a task
/// or a local user must not read the database or a token. Files created later get the mode
/// from the server's umask (`haneul server` sets 077).
pub fn make_private(data_dir: &Path) -> Result<(), ServerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
                ServerError::Io {
                    path: p.to_path_buf(),
                    source,
                }
            })
        };
        chmod(data_dir, 0o700)?;
        let entries = std::fs::read_dir(data_dir).map_err(|source| ServerError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                chmod(&e.path(), 0o600)?;
            }
        }
    }
    Ok(())
}

fn write_secret(path: &Path, secret: &str) -> Result<(), ServerError> {
    use std::io::Write;
    let io = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(format!("{secret}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// A started server: its address, and the handle that stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub bootstrap: Bootstrap,
    signals: Arc<Signals>,
    http: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    controller: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting requests, lets the controller give its lease up, and waits for both.
    pub async fn stop(self) {
        self.signals.shutdown.send_replace(true);
        let _ = self.controller.await;
        let _ = self.http.await;
    }

    /// Waits until the HTTP server ends (it ends only on [`Running::stop`] or an I/O error).
    pub async fn wait(&mut self) -> Result<(), std::io::Error> {
        match (&mut self.http).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    pub fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }
}

/// Opens the store, bootstraps the administrator, binds, and starts the HTTP server and the
/// controller. Returns once requests are accepted.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    cfg.identity.validate().map_err(ServerError::Identity)?;
    if cfg.tls.is_none() && !cfg.insecure_http && !cfg.listen.ip().is_loopback() {
        return Err(ServerError::Insecure(cfg.listen));
    }
    // Before anything is opened: a bad certificate stops the start, not the first handshake.
    let certs = cfg.tls.clone().map(tls::CertStore::open).transpose()?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServerError::Io {
        path: cfg.data_dir.clone(),
        source,
    })?;
    make_private(&cfg.data_dir)?;
    let store = open_store(&cfg.database).await?;
    let bootstrap = bootstrap_at(
        store.as_ref(),
        &cfg.data_dir,
        cfg.identity.uid_range,
        cfg.clock.now_ms(),
    )
    .await?;
    let signals = Signals::new();
    let metrics = Arc::new(Metrics::new());
    let mut holder = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "haneul".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    // Standbys read the leader's URL from its lease (the id has no spaces).
    if let Some(url) = &cfg.advertise_url {
        holder = format!("{} {url}", holder.replace(' ', "-"));
    }
    // `DIR/accounting.toml`, when present, replaces the configured rules (docs/accounting.md).
    let policy_file = cfg.data_dir.join("accounting.toml");
    let accounting = Arc::new(if policy_file.exists() {
        accounting::AccountingPolicy::load(&policy_file).map_err(ServerError::Accounting)?
    } else {
        cfg.accounting.clone()
    });
    // `DIR/idle.toml`, when present, replaces the configured idle policy (docs/telemetry.md).
    let idle_file = cfg.data_dir.join("idle.toml");
    let idle = Arc::new(if idle_file.exists() {
        telemetry::IdlePolicy::load(&idle_file).map_err(ServerError::Accounting)?
    } else {
        cfg.idle.validate().map_err(ServerError::Accounting)?;
        cfg.idle.clone()
    });
    let controller = Controller::new(
        store.clone(),
        ControllerConfig {
            holder,
            lease_ttl: cfg.lease_ttl,
            tick: cfg.tick,
            node_timeout: cfg.node_timeout,
            policy: haneul_sched::Policy::default(),
        },
        signals.clone(),
        metrics.clone(),
    )
    .with_accounting(accounting.clone())
    .with_idle(idle.clone())
    .with_clock(cfg.clock.clone());
    let changes = store.changes();
    let state = AppState::new_with_clock(
        store,
        signals.clone(),
        metrics,
        cfg.heartbeat_interval.as_millis() as i64,
        cfg.clock.clone(),
    )
    .with_accounting(accounting)
    .with_idle(idle)
    .with_identity(cfg.identity.clone());
    let mut state = state;
    state.metrics_token = cfg.metrics_token.as_deref().map(Arc::from);
    state.sessions = Arc::new(cfg.sessions.clone());
    let mut oidc_cfg = cfg.oidc.clone();
    if oidc_cfg.redirect_base.is_none() {
        oidc_cfg.redirect_base = cfg.advertise_url.clone();
    }
    state.oidc = Arc::new(oidc::Oidc::new(oidc_cfg)?);
    state.terminals = Arc::new(terminal::Hub::new(cfg.terminal_grace));
    tokio::spawn(terminal::sweep(state.clone(), signals.shutdown.subscribe()));
    state.jupyter_idle = cfg.jupyter_idle;
    tokio::spawn(jupyter::sweep(state.clone(), signals.shutdown.subscribe()));
    let key =
        anchor::load_or_create_key(&cfg.anchor.key_file).map_err(|source| ServerError::Io {
            path: cfg.anchor.key_file.clone(),
            source,
        })?;
    tokio::spawn(anchor::run(
        state.store.clone(),
        cfg.clock.clone(),
        cfg.anchor.clone(),
        key,
        signals.shutdown.subscribe(),
    ));
    let listener = serve::bind(cfg.listen).map_err(|source| ServerError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let stop = signals.shutdown.subscribe();
    let http = tokio::spawn(serve::serve(
        listener,
        app(state),
        certs,
        cfg.limits.clone(),
        cfg.clock.clone(),
        stop,
    )?);
    if let Some(changes) = changes {
        tokio::spawn(wake_on_changes(changes, signals.clone()));
    }
    let controller = tokio::spawn(controller.run());
    Ok(Running {
        addr,
        bootstrap,
        signals,
        http,
        controller,
    })
}
