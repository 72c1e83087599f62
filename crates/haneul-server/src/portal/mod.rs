//! The web portal under `/portal`: server-rendered pages (askama) with htmx for the live parts
//! (job states, following logs), assets compiled into the binary.
//!
//! The portal owns no data and no policy. Each page asks the `/v1` API in process as the
//! session's user, so a page can show exactly what the API would answer that user: the same
//! roles, and another tenant's job is a 404 here as it is there. Forms are checked against
//! cross-site use by the SameSite=Strict cookie and an `Origin` check on every POST.
//!
//! Sessions are the portal's own: signing in with a token makes a random session id, which
//! the HttpOnly cookie holds (never the token). The store keeps the id's hash with the token
//! signed in with; the session ends after [`crate::auth::SessionPolicy`]'s idle time or its
//! absolute lifetime, on sign-out, or when that token is revoked or expires.

mod chart;
mod i18n;
mod programmes;
mod sessions;
mod sso;
mod term;

use crate::AppState;
use crate::error::ApiError;
use askama::Template;
use axum::body::Body;
use axum::extract::{Form, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use haneul_api as api;
use i18n::{Lang, Texts};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

const SESSION_COOKIE: &str = "haneul_session";
const LANG_COOKIE: &str = "haneul_lang";
const HTMX_JS: &[u8] = include_bytes!("../../assets/htmx.min.js");
const PORTAL_CSS: &str = include_str!("../../assets/portal.css");

/// The `/v1` API as a service the pages call in process.
#[derive(Clone)]
struct Api(Router);

/// The portal's routes, to be merged into the server's router.
pub fn router(state: AppState) -> Router<AppState> {
    let (api, _) = utoipa_axum::router::OpenApiRouter::new()
        .merge(crate::routes::router())
        .merge(crate::accounting::router())
        .merge(crate::programmes::router())
        .merge(crate::oidc::router())
        // The job page's verdict, charts and idle notice read `/v1/jobs/{id}/efficiency`.
        .merge(crate::telemetry::router())
        .split_for_parts();
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal") }))
        .route("/portal", get(home))
        .route("/portal/signin", get(signin_page).post(signin))
        // Forms' addresses opened as pages (a reload, a bookmark) lead to the page the form
        // belongs to rather than a bare 405.
        .route(
            "/portal/signout",
            get(|| async { Redirect::to("/portal") }).post(signout),
        )
        .route("/portal/lang/{code}", get(switch_lang))
        .route("/portal/jobs", get(jobs_page).post(submit_job))
        .route("/portal/jobs/rows", get(job_rows))
        .route("/portal/jobs/{id}", get(job_page))
        .route("/portal/jobs/{id}/state", get(job_state))
        .route("/portal/jobs/{id}/logs", get(job_logs))
        .route(
            "/portal/jobs/{id}/cancel",
            get(|Path(id): Path<i64>| async move { Redirect::to(&format!("/portal/jobs/{id}")) })
                .post(cancel_job),
        )
        .route("/portal/fleet", get(fleet_page))
        .route(
            "/portal/nodes/{id}/{action}",
            get(|| async { Redirect::to("/portal/fleet") }).post(node_action),
        )
        .route("/portal/audit", get(audit_page))
        .route("/portal/users/pending", get(pending_page))
        .route(
            "/portal/users/{id}/approve",
            get(|| async { Redirect::to("/portal/users/pending") }).post(approve_user),
        )
        // Calls, applications, scores and statements: portal/programmes.rs.
        .merge(programmes::routes())
        .merge(sso::routes())
        // JupyterLab sessions and their proxy: portal/sessions.rs.
        .merge(sessions::routes())
        .route("/portal/assets/htmx.min.js", get(htmx_js))
        .route("/portal/assets/portal.css", get(portal_css))
        .route("/portal/{*rest}", get(unknown_page))
        .layer(Extension(Api(api.with_state(state))))
        .layer(axum::middleware::from_fn(security_headers))
}

/// What a browser may do with the portal's pages. The pages carry no inline script or style
/// (htmx is told not to add its own), so the policy can refuse both; nothing may frame the
/// portal; and a page seen while signed in is never kept in the cache, so Back after signing
/// out shows nothing of it. The assets are the same for everyone and may be cached.
///
/// An answer from a JupyterLab session's server (`/portal/sessions/ID/...`, marked
/// [`sessions::Proxied`]) keeps the headers that server sent, its own content security policy
/// among them: JupyterLab needs inline styles and scripts of its own, which the portal's policy
/// would block. Only the session's owner reaches that path, and what it serves is their own
/// server's; the portal's pages keep the strict policy.
async fn security_headers(req: Request, next: axum::middleware::Next) -> Response {
    let cacheable = req.uri().path().starts_with("/portal/assets/");
    let mut res = next.run(req).await;
    if res.extensions().get::<sessions::Proxied>().is_some() {
        let h = res.headers_mut();
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static("same-origin"),
        );
        return res;
    }
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    if !cacheable {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    res
}

// --- request context ---

/// What every page needs: the language, and the signed-in session if there is one.
struct Ctx {
    lang: Lang,
    /// The signed-in user, from a live session.
    user: Option<haneul_store::UserRecord>,
    /// A session cookie came with the request (live or not).
    has_cookie: bool,
    /// htmx asked for a fragment (`HX-Request`), to be spliced into a page already shown.
    htmx: bool,
    path: String,
    api: Api,
    state: AppState,
}

/// The session id's hash, as the store keeps it.
fn session_hash(id: &str) -> String {
    haneul_store::hash_token(id)
}

/// The user of a live session with cookie value `id`; `None` when it is unknown, signed out,
/// idle or past its end, or its token no longer works. Activity is recorded at most once a
/// minute, so that browsing costs no write per page.
async fn session_user(s: &AppState, id: &str) -> Option<haneul_store::UserRecord> {
    let now = s.clock.now_ms();
    let hash = session_hash(id);
    let sess = s.store.get_session(&hash).await.ok()??;
    let idle = s.sessions.session_idle.as_millis() as i64;
    if sess.revoked_at.is_some() || now >= sess.expires_at || now - sess.last_seen >= idle {
        return None;
    }
    let token = s.store.get_token(sess.token_id).await.ok()?;
    if crate::auth::token_refusal(&token, now).is_some() {
        return None;
    }
    let user = s.store.get_user(sess.user_id).await.ok()?;
    if now - sess.last_seen >= 60_000 {
        let _ = s.store.touch_session(&hash, now).await;
    }
    Some(user)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = cookie(&parts.headers, LANG_COOKIE)
            .and_then(Lang::parse)
            .unwrap_or_else(|| {
                Lang::from_accept_language(
                    parts
                        .headers
                        .get(header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                )
            });
        if parts.method == Method::POST
            && !same_origin(
                &parts.headers,
                parts.uri.authority().map(|a| a.as_str()),
                state.sessions.secure_cookie,
            )
        {
            return Err((
                StatusCode::FORBIDDEN,
                "cross-site form refused: the Origin header must be this server",
            )
                .into_response());
        }
        let api = parts
            .extensions
            .get::<Api>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let id = cookie(&parts.headers, SESSION_COOKIE).filter(|t| plausible_token(t));
        let user = match id {
            Some(id) => session_user(state, id).await,
            None => None,
        };
        Ok(Ctx {
            lang,
            user,
            has_cookie: id.is_some(),
            htmx: parts.headers.contains_key("hx-request"),
            path: parts.uri.path().to_string(),
            api,
            state: state.clone(),
        })
    }
}

/// A POST must come from a page of this server: browsers send `Origin` on every POST, and
/// its scheme, host and port must be those the request was sent to (`https` when the server
/// is reached over TLS). With the SameSite=Strict cookie this keeps other sites, and a plain
/// HTTP page posing as this one, from submitting the portal's forms. Over HTTP/2 the host comes
/// in the request's authority, not a `Host` header.
fn same_origin(headers: &HeaderMap, authority: Option<&str>, over_tls: bool) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority);
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let scheme = if over_tls { "https://" } else { "http://" };
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .strip_prefix(scheme)
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// What the API answered, as the portal shows it.
enum Refusal {
    /// No session, or its token no longer works: back to the sign-in page.
    SignIn,
    NotFound,
    Forbidden(String),
    /// A field the API refused, with its reason (shown next to the form).
    Bad {
        field: String,
        message: String,
    },
    Internal(String),
}

impl Ctx {
    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, Refusal> {
        let Some(user) = &self.user else {
            return Err(Refusal::SignIn);
        };
        call_api(&self.api, As::Session(user), method, uri, body).await
    }

    async fn get<T: DeserializeOwned>(&self, uri: &str) -> Result<T, Refusal> {
        self.call(Method::GET, uri, None).await
    }

    fn base(&self, user: &api::User) -> Base {
        Base {
            t: self.t(),
            lang: self.lang.code(),
            other_lang: self.lang.other().code(),
            path: self.path.clone(),
            user: Some(user.clone()),
            operator: sees_all(user),
            signed_in: true,
        }
    }

    fn anonymous_base(&self) -> Base {
        Base {
            t: self.t(),
            lang: self.lang.code(),
            other_lang: self.lang.other().code(),
            path: self.path.clone(),
            user: None,
            operator: false,
            signed_in: self.has_cookie,
        }
    }

    /// The page for a refusal: sign-in redirect, or an error page with the API's status.
    fn refused(&self, r: Refusal) -> Response {
        let (status, heading, message) = match r {
            // A fragment must not become the sign-in page inside the page it refreshes: htmx
            // is told to load the sign-in page as the whole page instead.
            Refusal::SignIn if self.htmx => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [("hx-redirect", "/portal/signin")],
                )
                    .into_response();
            }
            Refusal::SignIn => return Redirect::to("/portal/signin").into_response(),
            Refusal::NotFound => (
                StatusCode::NOT_FOUND,
                self.t().not_found,
                self.t().not_found_help.to_string(),
            ),
            Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, self.t().forbidden, m),
            Refusal::Bad { field, message } => (
                StatusCode::BAD_REQUEST,
                self.t().refused,
                format!("{field}: {message}"),
            ),
            Refusal::Internal(m) => {
                tracing::error!(error = %m, "portal page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, self.t().refused, m)
            }
        };
        let page = ErrorPage {
            base: self.anonymous_base(),
            heading,
            message,
        };
        (status, render(&page)).into_response()
    }
}

/// Whom an in-process API request acts as.
enum As<'a> {
    /// A token being signed in with.
    Token(&'a str),
    /// A live session's user.
    Session(&'a haneul_store::UserRecord),
}

async fn call_api<T: DeserializeOwned>(
    api: &Api,
    who: As<'_>,
    method: Method,
    uri: &str,
    body: Option<serde_json::Value>,
) -> Result<T, Refusal> {
    let mut req = Request::builder().method(method).uri(uri);
    match who {
        As::Token(token) => {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        As::Session(user) => {
            req = req.extension(crate::auth::SessionUser(user.clone()));
        }
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let req = req
        .body(body)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let mut svc = api.0.clone();
    let resp = tower::Service::call(&mut svc, req)
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), crate::BODY_LIMIT * 64)
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| Refusal::Internal(e.to_string()));
    }
    let detail = serde_json::from_slice::<api::ErrorBody>(&bytes).ok();
    let message = detail
        .as_ref()
        .map(|d| d.error.message.clone())
        .unwrap_or_default();
    Err(match status {
        StatusCode::UNAUTHORIZED => Refusal::SignIn,
        StatusCode::NOT_FOUND => Refusal::NotFound,
        StatusCode::FORBIDDEN => Refusal::Forbidden(message),
        s if s.is_client_error() => Refusal::Bad {
            field: detail
                .and_then(|d| d.error.field)
                .unwrap_or_else(|| "request".into()),
            message,
        },
        _ => Refusal::Internal(message),
    })
}

fn sees_all(u: &api::User) -> bool {
    matches!(u.role, api::Role::CentreAdmin | api::Role::Auditor)
}

fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "portal template failed");
            ApiError::Internal(e.to_string()).into_response()
        }
    }
}

/// Runs a page body; a refusal becomes its page.
macro_rules! page {
    ($ctx:expr, $body:expr) => {
        match $body {
            Ok(r) => r,
            Err(refusal) => $ctx.refused(refusal),
        }
    };
}

// --- templates ---

/// The frame every page shares.
struct Base {
    t: &'static Texts,
    lang: &'static str,
    other_lang: &'static str,
    path: String,
    user: Option<api::User>,
    operator: bool,
    /// A session cookie came with the request (an error page still offers to sign out).
    signed_in: bool,
}

impl Base {
    /// Org and centre administrators, who may approve people waiting to be let in.
    fn approver(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| matches!(u.role, api::Role::CentreAdmin | api::Role::OrgAdmin))
    }

    fn role(&self) -> &'static str {
        match self.user.as_ref().map(|u| u.role) {
            Some(api::Role::CentreAdmin) => "centre-admin",
            Some(api::Role::OrgAdmin) => "org-admin",
            Some(api::Role::Member) => "member",
            Some(api::Role::Auditor) => "auditor",
            Some(api::Role::Agent) => "agent",
            None => "",
        }
    }
}

#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    base: Base,
    heading: &'static str,
    message: String,
}

/// A destructive action (cancel, drain, close, award) stopped to be confirmed, with a reason
/// that goes into the audit log.
#[derive(Template)]
#[template(path = "portal/confirm.html")]
struct ConfirmPage {
    base: Base,
    heading: String,
    consequence: &'static str,
    action: String,
    hidden: Vec<(&'static str, String)>,
    back: String,
    /// The confirmation came back without a reason.
    refused: bool,
}

/// What a destructive action's form carries: empty until its confirmation page is filled in.
#[derive(Debug, Default, Deserialize)]
struct ReasonForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirmed: String,
}

impl ReasonForm {
    /// The reason given, or None to ask for one.
    fn reason(&self) -> Option<&str> {
        Some(self.reason.trim()).filter(|r| !r.is_empty())
    }
}

/// What a destructive action needs before it is done.
struct Confirmation {
    heading: String,
    consequence: &'static str,
    action: String,
    hidden: Vec<(&'static str, String)>,
    back: String,
}

impl Confirmation {
    /// The confirmation page, saying a reason is needed when one was asked for and not given.
    fn page(self, ctx: &Ctx, user: &api::User, form: &ReasonForm) -> Response {
        render(&ConfirmPage {
            base: ctx.base(user),
            heading: self.heading,
            consequence: self.consequence,
            action: self.action,
            hidden: self.hidden,
            back: self.back,
            refused: !form.confirmed.is_empty(),
        })
    }
}

/// Only a centre administrator is asked to confirm an operator's action; anyone else is told
/// no at once, as the API would.
fn administrator(user: &api::User) -> Result<(), Refusal> {
    if user.role == api::Role::CentreAdmin {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "only a centre administrator may do this".into(),
        ))
    }
}

#[derive(Template)]
#[template(path = "portal/signin.html")]
struct SigninPage {
    base: Base,
    error: Option<&'static str>,
    /// Identity providers: (id, "Sign in with NAME").
    issuers: Vec<(String, String)>,
}

struct ProjectRow {
    project: api::Project,
    balances: Vec<BalanceRow>,
    used: Vec<api::Usage>,
}

/// One award's balance from `/v1/balances`, its figures formatted as the charts label them.
struct BalanceRow {
    balance: api::AwardBalance,
    granted: String,
    used: String,
    left: String,
    valid_until: String,
    state: &'static str,
    bar: String,
}

impl BalanceRow {
    fn new(b: api::AwardBalance, t: &Texts) -> BalanceRow {
        let state = match b.state.as_str() {
            "pending" => t.state_pending,
            "active" => t.state_active,
            "warning" => t.state_warning,
            "spent" => t.state_spent,
            "expired" => t.state_expired,
            _ => t.state,
        };
        let granted = chart::figure(b.gpu_hours_granted);
        let used = chart::figure(b.gpu_hours_used);
        let label = format!(
            "{} #{} {}: {} / {} {}",
            t.award, b.award, b.gpu_model, used, granted, t.used_of_granted
        );
        BalanceRow {
            bar: chart::used_of_granted(b.gpu_hours_used, b.gpu_hours_granted, &label),
            left: chart::figure(b.gpu_hours_left),
            valid_until: utc(b.valid_until)[..10].to_string(),
            granted,
            used,
            state,
            balance: b,
        }
    }
}

/// A job of the signed-in person's under an idle notice, still idle.
struct IdleRow {
    job: i64,
    /// When the controller stops it unless its GPUs get busy, in the centre's time zone.
    stops_at: String,
    detail: String,
}

/// The caller's own jobs under an idle notice that still sit idle, from `/v1/notices`.
async fn idle_rows(ctx: &Ctx, user: &api::User) -> Result<Vec<IdleRow>, Refusal> {
    let notices: Vec<api::Notice> = ctx.get("/v1/notices").await?;
    let zone = &ctx.state.accounting.time_zone;
    Ok(notices
        .into_iter()
        .filter(|n| n.user == Some(user.id))
        .filter_map(|n| {
            Some(IdleRow {
                job: n.job?,
                stops_at: zone.date_time(n.stops_at?),
                detail: n.detail,
            })
        })
        .collect())
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage {
    base: Base,
    /// Banners: the person's jobs whose GPUs sit idle and will be stopped.
    idle: Vec<IdleRow>,
    projects: Vec<ProjectRow>,
    chart: String,
    series: SeriesView,
}

impl HomePage {
    fn fixed3(&self, v: impl std::borrow::Borrow<f64>) -> String {
        api::fixed3(*v.borrow())
    }
}

/// A job as a list row.
struct JobRow {
    job: api::Job,
    project: String,
}

impl JobRow {
    fn gpus(&self) -> String {
        gpus_text(&self.job)
    }
    fn submitted(&self) -> String {
        utc(self.job.submitted_at)
    }
}

fn gpus_text(j: &api::Job) -> String {
    match j.gpu_fraction_milli {
        Some(m) => format!("{} × {:.3}", j.replicas, m as f64 / 1000.0),
        None => format!("{} × {}", j.replicas, j.gpus_per_task),
    }
}

fn ended(state: &str) -> bool {
    !matches!(state, "queued" | "running" | "stopping")
}

/// A Unix-millisecond time as `YYYY-MM-DD HH:MM:SS` UTC (civil-from-days, Howard Hinnant's
/// algorithm), so the portal needs no date crate for one format.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[derive(Template)]
#[template(path = "portal/job_rows.html")]
struct JobRows {
    t: &'static Texts,
    rows: Vec<JobRow>,
    /// The first page refreshes itself; older pages stay as they are (their rows would shift).
    live: bool,
}

/// The submission form's values, kept when the API refuses them so nothing typed is lost.
#[derive(Debug, Default, Deserialize)]
struct SubmitForm {
    #[serde(default)]
    project: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    gpus: String,
    #[serde(default)]
    nodes: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    command: String,
    /// Allowed GPU models, comma-separated; empty is any.
    #[serde(default)]
    gpu_model: String,
    /// CPU cores per task (decimals allowed); empty: the node's share by GPUs.
    #[serde(default)]
    cpus: String,
    /// Memory per task in GiB; empty: the node's share by GPUs.
    #[serde(default)]
    memory: String,
    #[serde(default)]
    priority: String,
    /// Container image; empty runs the command directly.
    #[serde(default)]
    image: String,
    /// Slurm's form: `afterok:12:13,afterany:14`.
    #[serde(default)]
    dependency: String,
    /// A job array as Slurm's `--array` (`0-99%8`); empty: one job.
    #[serde(default)]
    array: String,
}

impl SubmitForm {
    /// The form filled in as `job` was submitted, for "submit again".
    fn from_job(job: &api::Job) -> SubmitForm {
        let command = match job.command.as_slice() {
            [sh, c, line] if sh == "sh" && c == "-c" => line.clone(),
            words => words.join(" "),
        };
        SubmitForm {
            project: job.project.to_string(),
            name: job.name.clone(),
            gpus: job.gpus_per_task.to_string(),
            nodes: job.replicas.to_string(),
            time: job
                .time_limit_s
                .map(|s| s.div_ceil(60).to_string())
                .unwrap_or_default(),
            command,
            gpu_model: job.gpu_models.join(","),
            cpus: String::new(),
            memory: String::new(),
            priority: job.priority.clone(),
            image: job.container_image.clone().unwrap_or_default(),
            dependency: job
                .dependencies
                .iter()
                .map(|d| format!("{}:{}", d.kind, d.job))
                .collect::<Vec<_>>()
                .join(","),
            array: job.array.clone().unwrap_or_default(),
        }
    }
}

/// The form's field for a field the API named, so that its error shows beside what was typed.
fn form_field(api_field: &str) -> &str {
    match api_field {
        "gpus_per_task" | "gpu_fraction_milli" => "gpus",
        "replicas" => "nodes",
        "time_limit_s" => "time",
        "gpu_models" => "gpu_model",
        "cpu_milli_per_task" => "cpus",
        "memory_mib_per_task" => "memory",
        "container_image" => "image",
        "dependencies" => "dependency",
        other => other,
    }
}

/// A decimal amount of a unit, scaled (`1.5` cores as 1500 milli-cores).
fn scaled(field: &str, raw: &str, scale: f64) -> Result<Option<u64>, (String, String)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale < 1e15 => {
            Ok(Some((v * scale).round() as u64))
        }
        _ => Err((field.into(), format!("`{raw}` is not a positive number"))),
    }
}

#[derive(Template)]
#[template(path = "portal/jobs.html")]
struct JobsPage {
    base: Base,
    projects: Vec<api::Project>,
    form: SubmitForm,
    /// The field at fault and why, after a refused submission.
    error: Option<(String, String)>,
    rows: JobRows,
    pager: Pager,
}

#[derive(Template)]
#[template(path = "portal/job_state.html")]
struct JobState {
    t: &'static Texts,
    job: api::Job,
    can_cancel: bool,
    attempts: Vec<AttemptRow>,
    /// Who submitted it: a name, or `#id` where the viewer may not read that user.
    submitter: String,
    /// Times in the centre's zone, with the zone shown; empty where not reached yet.
    submitted: String,
    started: String,
    ended: String,
    /// Run time over all attempts so far, `H:MM:SS`.
    elapsed: String,
    gpu_hours: String,
}

impl JobState {
    fn ended(&self) -> bool {
        ended(&self.job.state)
    }
    fn gpus(&self) -> String {
        gpus_text(&self.job)
    }
}

/// What the job page and its live part show of `detail` to `viewer`.
async fn job_state_of(
    ctx: &Ctx,
    viewer: &api::User,
    detail: api::JobDetail,
    can_cancel: bool,
) -> JobState {
    let submitter = if detail.job.user == viewer.id {
        viewer.name.clone()
    } else {
        match ctx
            .get::<api::User>(&format!("/v1/users/{}", detail.job.user))
            .await
        {
            Ok(u) => u.name,
            Err(_) => format!("#{}", detail.job.user),
        }
    };
    let zone = &ctx.state.accounting.time_zone;
    let now = ctx.state.clock.now_ms();
    let started = detail.attempts.iter().filter_map(|a| a.started_at).min();
    let ended = if ended(&detail.job.state) {
        detail.attempts.iter().filter_map(|a| a.ended_at).max()
    } else {
        None
    };
    let run_ms: i64 = detail
        .attempts
        .iter()
        .filter_map(|a| Some(a.ended_at.unwrap_or(now) - a.started_at?))
        .map(|ms| ms.max(0))
        .sum();
    let gpu_ms: i64 = detail.attempts.iter().map(|a| a.gpu_ms).sum();
    JobState {
        t: ctx.t(),
        submitter,
        submitted: zone.date_time(detail.job.submitted_at),
        started: started.map(|ms| zone.date_time(ms)).unwrap_or_default(),
        ended: ended.map(|ms| zone.date_time(ms)).unwrap_or_default(),
        elapsed: if started.is_some() {
            clock_text(run_ms)
        } else {
            String::new()
        },
        gpu_hours: api::fixed3(gpu_ms as f64 / 3_600_000.0),
        job: detail.job,
        can_cancel,
        attempts: attempt_rows(detail.attempts, zone),
    }
}

/// `H:MM:SS` of a duration in milliseconds, as Slurm's and `time`'s users read elapsed time.
fn clock_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[derive(Template)]
#[template(path = "portal/job.html")]
struct JobPage {
    base: Base,
    state: JobState,
    project: String,
    command: String,
    can_read_logs: bool,
    /// The telemetry's plain verdict ("used 4 of 8 GPUs; ..."), empty before any sample.
    gpu_verdict: String,
    /// Utilisation and memory per GPU over the job's minutes, as SVG.
    gpu_charts: String,
    /// The idle policy's notice while the job sits idle: (its text, when it will be stopped).
    idle: Option<(String, String)>,
}

struct AttemptRow {
    attempt: api::Attempt,
    started: String,
    nodes: String,
}

#[derive(Template)]
#[template(path = "portal/logs.html")]
struct LogChunks {
    job: i64,
    /// Finished lines, drawn as HTML ([`term::render`]).
    done: String,
    /// The unfinished last line, drawn as HTML.
    tail: String,
    after: i64,
    skip: usize,
    sgr: String,
    follow: bool,
}

/// GPUs of one model in one pool, by what they are doing.
#[derive(Default)]
struct FleetRow {
    pool: String,
    model: String,
    total: i64,
    allocated: i64,
    idle: i64,
    draining: i64,
    down: i64,
    /// The shares held on the allocated GPUs, in GPUs (two decimals: a quarter GPU shows).
    share: String,
}

struct QueueRow {
    project: String,
    queued: usize,
    running: usize,
    queued_gpus: f64,
}

struct NodeRow {
    node: api::Node,
    pool: String,
    allocated: i64,
}

#[derive(Template)]
#[template(path = "portal/fleet.html")]
struct FleetPage {
    base: Base,
    fleet: Vec<FleetRow>,
    queue: Vec<QueueRow>,
    nodes: Vec<NodeRow>,
    admin: bool,
    series: SeriesView,
}

#[derive(Debug, Default, Deserialize)]
struct AuditFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
}

struct AuditRow {
    entry: api::AuditEntry,
    at: String,
}

/// People from an identity provider who wait for their organisation's administrator.
#[derive(Template)]
#[template(path = "portal/pending.html")]
struct PendingPage {
    base: Base,
    users: Vec<api::User>,
}

#[derive(Template)]
#[template(path = "portal/audit.html")]
struct AuditPage {
    base: Base,
    filter: AuditFilter,
    entries: Vec<AuditRow>,
}

// --- handlers ---

async fn htmx_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HTMX_JS,
    )
        .into_response()
}

async fn portal_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PORTAL_CSS,
    )
        .into_response()
}

async fn unknown_page(ctx: Ctx) -> Response {
    ctx.refused(Refusal::NotFound)
}

async fn signin_page(ctx: Ctx) -> Response {
    render(&SigninPage {
        base: ctx.anonymous_base(),
        error: None,
        issuers: sso::buttons(&ctx),
    })
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(default)]
    token: String,
}

/// Tokens are `hn_` and hex; anything else cannot be one, and must not reach a header.
fn plausible_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= 256 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    // HttpOnly: scripts never read it. SameSite=Strict: no other site's page sends it.
    // Secure: under TLS, never sent in the clear.
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; Path=/portal; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    )
}

/// A new session for the token just checked; its cookie value.
async fn open_session(s: &AppState, token: &str) -> Option<String> {
    let now = s.clock.now_ms();
    let found = s
        .store
        .token_auth(&haneul_store::hash_token(token))
        .await
        .ok()??;
    let id = crate::routes::new_secret();
    let end = now + s.sessions.session_absolute.as_millis() as i64;
    // A session never outlives its token.
    let end = found.token.expires_at.map_or(end, |e| e.min(end));
    s.store
        .create_session(&session_hash(&id), found.user.id, found.token.id, end, now)
        .await
        .ok()?;
    Some(id)
}

async fn signin(ctx: Ctx, Form(f): Form<SigninForm>) -> Response {
    let token = f.token.trim().to_string();
    let user = if plausible_token(&token) {
        call_api::<api::User>(&ctx.api, As::Token(&token), Method::GET, "/v1/whoami", None)
            .await
            .ok()
    } else {
        None
    };
    let session = match &user {
        Some(u) if u.role != api::Role::Agent => open_session(&ctx.state, &token).await,
        _ => None,
    };
    match (user, session) {
        (Some(u), Some(id)) => (
            [(
                header::SET_COOKIE,
                session_cookie(
                    &id,
                    ctx.state.sessions.session_absolute.as_secs() as i64,
                    ctx.state.sessions.secure_cookie,
                ),
            )],
            Redirect::to(if sees_all(&u) {
                "/portal/fleet"
            } else {
                "/portal"
            }),
        )
            .into_response(),
        _ => (
            StatusCode::UNAUTHORIZED,
            render(&SigninPage {
                base: ctx.anonymous_base(),
                error: Some(ctx.t().bad_token),
                issuers: sso::buttons(&ctx),
            }),
        )
            .into_response(),
    }
}

/// Ends the session in the store (so the id never works again, wherever the cookie was
/// copied) and clears the cookie.
async fn signout(ctx: Ctx, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let _ = ctx
            .state
            .store
            .revoke_session(&session_hash(id), ctx.state.clock.now_ms())
            .await;
    }
    (
        [(
            header::SET_COOKIE,
            session_cookie("", 0, ctx.state.sessions.secure_cookie),
        )],
        Redirect::to("/portal/signin"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

async fn switch_lang(Path(code): Path<String>, Query(q): Query<Back>) -> Response {
    let lang = Lang::parse(&code).unwrap_or(Lang::En);
    // Only back into the portal: never an open redirect.
    let back = q
        .back
        .filter(|b| b.starts_with("/portal") && !b.starts_with("//"))
        .unwrap_or_else(|| "/portal".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{LANG_COOKIE}={}; Path=/portal; SameSite=Lax; Max-Age=31536000",
                lang.code()
            ),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

async fn home(ctx: Ctx) -> Response {
    page!(ctx, home_body(&ctx).await)
}

async fn home_body(ctx: &Ctx) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
    let balances: Vec<api::AwardBalance> = ctx.get("/v1/balances").await?;
    let usage: Vec<api::Usage> = ctx.get("/v1/usage").await?;
    let bars: Vec<(String, f64)> = projects
        .iter()
        .map(|p| {
            let used = usage
                .iter()
                .filter(|u| u.project == p.id)
                .map(|u| u.gpu_hours)
                .sum();
            (p.name.clone(), used)
        })
        .collect();
    let chart = chart::bars(&bars, ctx.t().used_hours);
    let projects = projects
        .into_iter()
        .map(|p| ProjectRow {
            balances: balances
                .iter()
                .filter(|b| b.project == p.id)
                .map(|b| BalanceRow::new(b.clone(), ctx.t()))
                .collect(),
            used: usage
                .iter()
                .filter(|u| u.project == p.id)
                .cloned()
                .collect(),
            project: p,
        })
        .collect();
    let series = usage_series(
        ctx,
        "project",
        ctx.t().usage_over_time_project,
        ctx.t().project,
        |l| &l.charged_gpu_hours,
    )
    .await?;
    let idle = idle_rows(ctx, &user).await?;
    Ok(render(&HomePage {
        base: ctx.base(&user),
        idle,
        projects,
        chart,
        series,
    }))
}

/// Jobs per page of the job list.
const JOB_PAGE: usize = 50;

/// How many pages back the "newer" link can retrace exactly; further back it returns to the
/// newest page.
const TRAIL_MAX: usize = 20;

/// One page of the jobs the API shows the caller, newest first, below job id `before` when
/// given; and the API's `next_before` for the page after it.
async fn load_rows(ctx: &Ctx, before: Option<i64>) -> Result<(Vec<JobRow>, Option<i64>), Refusal> {
    let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
    let names: BTreeMap<i64, String> = projects.into_iter().map(|p| (p.id, p.name)).collect();
    let uri = match before {
        Some(b) => format!("/v1/jobs?limit={JOB_PAGE}&before={b}"),
        None => format!("/v1/jobs?limit={JOB_PAGE}"),
    };
    let list: api::JobList = ctx.get(&uri).await?;
    let rows = list
        .jobs
        .into_iter()
        .map(|job| JobRow {
            project: names
                .get(&job.project)
                .cloned()
                .unwrap_or_else(|| job.project.to_string()),
            job,
        })
        .collect();
    Ok((rows, list.next_before))
}

/// Where the job list is: `before` (the API's cursor) and `trail`, the cursors of the newer
/// pages seen on the way here, newest first, so that "newer" goes back one page with the same
/// `before` cursor the API pages with (it has no cursor for the other direction).
#[derive(Debug, Default, Deserialize)]
struct JobsQuery {
    #[serde(default)]
    before: String,
    #[serde(default)]
    trail: String,
    /// A job whose submission fills the form ("submit again").
    #[serde(default)]
    again: String,
}

/// The job list's paging links; `None` where there is no such page.
struct Pager {
    newer: Option<String>,
    older: Option<String>,
}

fn cursor(field: &str, raw: &str) -> Result<Option<i64>, Refusal> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<i64>() {
        Ok(v) if v > 0 => Ok(Some(v)),
        _ => Err(Refusal::Bad {
            field: field.into(),
            message: format!("`{raw}` is not a job id"),
        }),
    }
}

impl JobsQuery {
    fn before(&self) -> Result<Option<i64>, Refusal> {
        cursor("before", &self.before)
    }

    fn trail(&self) -> Result<Vec<i64>, Refusal> {
        self.trail
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .take(TRAIL_MAX)
            .map(|t| cursor("trail", t).map(|v| v.unwrap_or_default()))
            .collect()
    }

    fn pager(&self, next_before: Option<i64>) -> Result<Pager, Refusal> {
        let before = self.before()?;
        let trail = self.trail()?;
        let link = |before: i64, trail: &[i64]| {
            let mut href = format!("/portal/jobs?before={before}");
            if !trail.is_empty() {
                let list: Vec<String> = trail.iter().map(i64::to_string).collect();
                href.push_str(&format!("&trail={}", list.join("%2C")));
            }
            href
        };
        let newer = before.map(|_| match trail.split_first() {
            Some((prev, rest)) => link(*prev, rest),
            None => "/portal/jobs".to_string(),
        });
        let older = next_before.map(|next| {
            let mut back: Vec<i64> = before.into_iter().chain(trail.iter().copied()).collect();
            back.truncate(TRAIL_MAX);
            link(next, &back)
        });
        Ok(Pager { newer, older })
    }
}

async fn jobs_page(ctx: Ctx, Query(q): Query<JobsQuery>) -> Response {
    let form = async {
        Ok(match cursor("again", &q.again)? {
            Some(id) => {
                let detail: api::JobDetail = ctx.get(&format!("/v1/jobs/{id}")).await?;
                SubmitForm::from_job(&detail.job)
            }
            None => SubmitForm::default(),
        })
    };
    match form.await {
        Ok(form) => page!(ctx, jobs_body(&ctx, form, None, &q).await),
        Err(r) => ctx.refused(r),
    }
}

async fn jobs_body(
    ctx: &Ctx,
    form: SubmitForm,
    error: Option<(String, String)>,
    q: &JobsQuery,
) -> Result<Response, Refusal> {
    let before = q.before()?;
    let user: api::User = ctx.get("/v1/whoami").await?;
    let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
    let (rows, next_before) = load_rows(ctx, before).await?;
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = JobsPage {
        base: ctx.base(&user),
        projects,
        form,
        error,
        rows: JobRows {
            t: ctx.t(),
            rows,
            live: before.is_none(),
        },
        pager: q.pager(next_before)?,
    };
    Ok((status, render(&page)).into_response())
}

async fn job_rows(ctx: Ctx) -> Response {
    page!(
        ctx,
        load_rows(&ctx, None)
            .await
            .map(|(rows, _)| render(&JobRows {
                t: ctx.t(),
                rows,
                live: true,
            }))
    )
}

/// Reads a form number, naming the field when it is not one.
fn number(field: &str, raw: &str, default: u64) -> Result<u64, (String, String)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(default);
    }
    raw.parse::<u64>()
        .map_err(|_| (field.to_string(), format!("`{raw}` is not a whole number")))
}

fn submission(f: &SubmitForm) -> Result<serde_json::Value, (String, String)> {
    let project = number("project", &f.project, 0)?;
    if project == 0 {
        return Err(("project".into(), "choose a project".into()));
    }
    let gpus = number("gpus", &f.gpus, 1)?;
    let nodes = number("nodes", &f.nodes, 1)?;
    if nodes == 0 {
        return Err(("nodes".into(), "at least 1".into()));
    }
    let minutes = number("time", &f.time, 0)?;
    let command = f.command.trim();
    if command.is_empty() {
        return Err((
            "command".into(),
            "give the command to run, for example `python train.py`".into(),
        ));
    }
    let mut body = serde_json::json!({
        "project": project,
        "name": f.name.trim(),
        "command": ["sh", "-c", command],
        "replicas": nodes,
        "gpus_per_task": gpus,
    });
    if minutes > 0 {
        body["time_limit_s"] = serde_json::json!(minutes * 60);
    }
    let models: Vec<&str> = f
        .gpu_model
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    if !models.is_empty() {
        body["gpu_models"] = serde_json::json!(models);
    }
    if let Some(milli) = scaled("cpus", &f.cpus, 1000.0)? {
        body["cpu_milli_per_task"] = serde_json::json!(milli);
    }
    if let Some(mib) = scaled("memory", &f.memory, 1024.0)? {
        body["memory_mib_per_task"] = serde_json::json!(mib);
    }
    match f.priority.trim() {
        "" => {}
        p @ ("low" | "normal" | "high" | "urgent") => body["priority"] = serde_json::json!(p),
        other => {
            return Err((
                "priority".into(),
                format!("`{other}` is not a priority: low, normal, high or urgent"),
            ));
        }
    }
    if !f.image.trim().is_empty() {
        body["container_image"] = serde_json::json!(f.image.trim());
    }
    let mut dependencies = Vec::new();
    for part in f
        .dependency
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bad = || {
            (
                "dependency".to_string(),
                format!("`{part}` is not afterok:ID or afterany:ID (several ids: afterok:12:13)"),
            )
        };
        let mut words = part.split(':');
        let kind = words.next().unwrap_or_default();
        if kind != "afterok" && kind != "afterany" {
            return Err(bad());
        }
        let ids: Vec<&str> = words.collect();
        if ids.is_empty() {
            return Err(bad());
        }
        for id in ids {
            match id.trim().parse::<i64>() {
                Ok(job) if job > 0 => {
                    dependencies.push(serde_json::json!({"kind": kind, "job": job}))
                }
                _ => return Err(bad()),
            }
        }
    }
    if !dependencies.is_empty() {
        body["dependencies"] = serde_json::json!(dependencies);
    }
    // Checked by the server, whose error names `array` and lands beside the field.
    if !f.array.trim().is_empty() {
        body["array"] = serde_json::json!(f.array.trim());
    }
    Ok(body)
}

async fn submit_job(ctx: Ctx, Form(f): Form<SubmitForm>) -> Response {
    let body = match submission(&f) {
        Ok(b) => b,
        Err(e) => {
            return page!(
                ctx,
                jobs_body(&ctx, f, Some(e), &JobsQuery::default()).await
            );
        }
    };
    match ctx
        .call::<api::Job>(Method::POST, "/v1/jobs", Some(body))
        .await
    {
        Ok(job) => Redirect::to(&format!("/portal/jobs/{}", job.id)).into_response(),
        Err(Refusal::Bad { field, message }) => {
            let field = form_field(&field).to_string();
            page!(
                ctx,
                jobs_body(&ctx, f, Some((field, message)), &JobsQuery::default()).await
            )
        }
        Err(Refusal::Forbidden(message)) => {
            page!(
                ctx,
                jobs_body(
                    &ctx,
                    f,
                    Some(("project".into(), message)),
                    &JobsQuery::default()
                )
                .await
            )
        }
        Err(r) => ctx.refused(r),
    }
}

/// Whether the caller may cancel the job and read its logs: the same rules as the API's
/// (crate::auth), applied to what `/v1/whoami` and the project say.
fn job_rights(user: &api::User, job: &api::Job, project: &api::Project) -> (bool, bool) {
    let manages = match user.role {
        api::Role::CentreAdmin => true,
        api::Role::OrgAdmin => user.org == Some(project.org),
        _ => false,
    };
    let member = user.role == api::Role::Member && user.projects.contains(&project.id);
    (
        manages || (member && job.user == user.id),
        manages || member,
    )
}

async fn job_page(ctx: Ctx, Path(id): Path<String>) -> Response {
    page!(ctx, job_body(&ctx, &id).await)
}

fn job_id(raw: &str) -> Result<i64, Refusal> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or(Refusal::NotFound)
}

async fn job_body(ctx: &Ctx, raw: &str) -> Result<Response, Refusal> {
    let id = job_id(raw)?;
    let user: api::User = ctx.get("/v1/whoami").await?;
    let detail: api::JobDetail = ctx.get(&format!("/v1/jobs/{id}")).await?;
    let project: api::Project = ctx
        .get(&format!("/v1/projects/{}", detail.job.project))
        .await?;
    let (can_cancel, can_read_logs) = job_rights(&user, &detail.job, &project);
    let command = detail.job.command.join(" ");
    // A page without telemetry still shows the job.
    let eff: Option<api::JobEfficiency> = ctx.get(&format!("/v1/jobs/{id}/efficiency")).await.ok();
    let zone = &ctx.state.accounting.time_zone;
    let idle = eff
        .as_ref()
        .and_then(|e| Some((e.idle_notice.clone()?, zone.date_time(e.idle_stops_at?))));
    let (gpu_verdict, gpu_charts) = eff
        .filter(|e| e.samples > 0)
        .map(|e| (e.verdict.clone(), gpu_charts(&e)))
        .unwrap_or_default();
    let page = JobPage {
        base: ctx.base(&user),
        state: job_state_of(ctx, &user, detail, can_cancel).await,
        project: project.name,
        command,
        can_read_logs,
        gpu_verdict,
        gpu_charts,
        idle,
    };
    Ok(render(&page))
}

/// A job's GPU utilisation and memory per minute, one line per GPU, drawn server-side.
fn gpu_charts(e: &api::JobEfficiency) -> String {
    let minutes: std::collections::BTreeSet<i64> = e.series.iter().map(|m| m.minute).collect();
    let index: BTreeMap<i64, usize> = minutes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let ticks: Vec<String> = minutes
        .iter()
        .map(|m| {
            let of_day = m.rem_euclid(86_400_000) / 60_000;
            format!("{:02}:{:02}", of_day / 60, of_day % 60)
        })
        .collect();
    let mut util: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut mem: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for m in &e.series {
        let i = index[&m.minute];
        util.entry(&m.uuid)
            .or_insert_with(|| vec![0.0; ticks.len()])[i] = m.util_mean_pct;
        mem.entry(&m.uuid).or_insert_with(|| vec![0.0; ticks.len()])[i] = m.mem_max_mib as f64;
    }
    let named = |m: BTreeMap<&str, Vec<f64>>| -> Vec<(String, Vec<f64>)> {
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    let mut out = chart::lines(
        &ticks,
        &named(util),
        &chart::Axes {
            title: "GPU utilisation (%)",
            x: "minute (UTC)",
            y: "%",
        },
    );
    out.push_str(&chart::lines(
        &ticks,
        &named(mem),
        &chart::Axes {
            title: "GPU memory (MiB)",
            x: "minute (UTC)",
            y: "MiB",
        },
    ));
    out
}

fn attempt_rows(attempts: Vec<api::Attempt>, zone: &crate::calendar::Calendar) -> Vec<AttemptRow> {
    attempts
        .into_iter()
        .map(|a| AttemptRow {
            started: a
                .started_at
                .map(|ms| zone.date_time(ms))
                .unwrap_or_default(),
            nodes: a
                .tasks
                .iter()
                .map(|t| format!("{}:{:?}", t.node, t.gpus))
                .collect::<Vec<_>>()
                .join(" "),
            attempt: a,
        })
        .collect()
}

async fn job_state(ctx: Ctx, Path(id): Path<String>) -> Response {
    page!(ctx, job_state_body(&ctx, &id).await)
}

async fn job_state_body(ctx: &Ctx, raw: &str) -> Result<Response, Refusal> {
    let id = job_id(raw)?;
    let user: api::User = ctx.get("/v1/whoami").await?;
    let detail: api::JobDetail = ctx.get(&format!("/v1/jobs/{id}")).await?;
    let project: api::Project = ctx
        .get(&format!("/v1/projects/{}", detail.job.project))
        .await?;
    let (can_cancel, _) = job_rights(&user, &detail.job, &project);
    Ok(render(&job_state_of(ctx, &user, detail, can_cancel).await))
}

/// Where the log view's next refresh starts: after chunk `after`, `skip` bytes into the next
/// one, with the colours `sgr` in effect there.
#[derive(Deserialize)]
struct After {
    after: Option<i64>,
    skip: Option<usize>,
    sgr: Option<String>,
}

async fn job_logs(ctx: Ctx, Path(id): Path<String>, Query(q): Query<After>) -> Response {
    page!(ctx, logs_body(&ctx, &id, &q).await)
}

async fn logs_body(ctx: &Ctx, raw: &str, q: &After) -> Result<Response, Refusal> {
    let id = job_id(raw)?;
    let after = q.after.unwrap_or(0);
    // The state is read before the chunks: the agent uploads a task's last output before it
    // reports the exit, so once the job had ended, these chunks are all there will be.
    let job: api::JobDetail = ctx.get(&format!("/v1/jobs/{id}")).await?;
    let chunks: Vec<api::LogChunk> = ctx
        .get(&format!("/v1/jobs/{id}/logs?after={after}&limit=1000"))
        .await?;
    let follow = !ended(&job.job.state) || chunks.len() == 1000;
    // What came before `skip` in the first chunk was drawn as finished lines last time.
    let skip = q.skip.unwrap_or(0);
    let mut parts: Vec<(i64, &str)> = chunks.iter().map(|c| (c.id, c.data.as_str())).collect();
    if let Some((_, first)) = parts.first_mut()
        && first.is_char_boundary(skip)
    {
        *first = &first[skip..];
    }
    let text: String = parts.iter().map(|(_, d)| *d).collect();
    // Finished lines are drawn for good; the unfinished last line is drawn inside the element
    // that the next refresh replaces, so that it is drawn again from its start.
    let cut = text.rfind('\n').map_or(0, |i| i + 1);
    let (done, style) = term::render(
        &text[..cut],
        term::Style::from_codes(q.sgr.as_deref().unwrap_or("")),
    );
    let (tail, _) = term::render(&text[cut..], style);
    // Where the unfinished line starts: the chunk before the one holding it, and how far into
    // that one it begins.
    let (mut tail_after, mut tail_skip) = (after, skip);
    let mut offset = 0;
    for (i, (chunk, data)) in parts.iter().enumerate() {
        let end = offset + data.len();
        if cut < end || (cut == end && i + 1 == parts.len()) {
            let into = cut - offset;
            (tail_after, tail_skip) = if into == data.len() {
                (*chunk, 0)
            } else {
                let before = if i == 0 { after } else { parts[i - 1].0 };
                let base = if i == 0 { skip } else { 0 };
                (before, base + into)
            };
            break;
        }
        offset = end;
    }
    Ok(render(&LogChunks {
        job: id,
        done,
        tail,
        after: tail_after,
        skip: tail_skip,
        sgr: style.codes(),
        follow,
    }))
}

async fn cancel_job(ctx: Ctx, Path(id): Path<String>, Form(f): Form<ReasonForm>) -> Response {
    let result = async {
        let id = job_id(&id)?;
        let Some(reason) = f.reason() else {
            // Only someone who may cancel the job is asked to confirm it.
            let user: api::User = ctx.get("/v1/whoami").await?;
            let detail: api::JobDetail = ctx.get(&format!("/v1/jobs/{id}")).await?;
            let project: api::Project = ctx
                .get(&format!("/v1/projects/{}", detail.job.project))
                .await?;
            if !job_rights(&user, &detail.job, &project).0 {
                return Err(Refusal::Forbidden(
                    "only the job's owner or its organisation's admin may cancel it".into(),
                ));
            }
            let confirm = Confirmation {
                heading: format!("{} {id}", ctx.t().cancel),
                consequence: ctx.t().cancel_consequence,
                action: format!("/portal/jobs/{id}/cancel"),
                hidden: Vec::new(),
                back: format!("/portal/jobs/{id}"),
            };
            return Ok(confirm.page(&ctx, &user, &f));
        };
        ctx.call::<api::Job>(
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            Some(serde_json::json!({ "reason": reason })),
        )
        .await?;
        Ok(Redirect::to(&format!("/portal/jobs/{id}")).into_response())
    };
    page!(ctx, result.await)
}

async fn fleet_page(ctx: Ctx) -> Response {
    page!(ctx, fleet_body(&ctx).await)
}

async fn fleet_body(ctx: &Ctx) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    if !sees_all(&user) {
        // The fleet is the operators' page; to anyone else it is not there.
        return Err(Refusal::NotFound);
    }
    // The counts come from one consistent read of the store (`/v1/fleet/summary`); the node
    // list only adds names and states.
    let summary: api::FleetSummary = ctx.get("/v1/fleet/summary").await?;
    let nodes: Vec<api::Node> = ctx.get("/v1/nodes").await?;
    let pool_names: BTreeMap<i64, String> = summary
        .gpus
        .iter()
        .map(|g| (g.pool, g.pool_name.clone()))
        .collect();
    let held: BTreeMap<i64, i64> = summary
        .nodes
        .iter()
        .map(|n| (n.node, n.allocated))
        .collect();
    let node_rows = nodes
        .into_iter()
        .map(|n| NodeRow {
            pool: pool_names
                .get(&n.pool)
                .cloned()
                .unwrap_or_else(|| n.pool.to_string()),
            allocated: held.get(&n.id).copied().unwrap_or(0),
            node: n,
        })
        .collect();
    let fleet = summary
        .gpus
        .into_iter()
        .map(|g| FleetRow {
            pool: g.pool_name,
            model: g.gpu_model,
            total: g.total,
            allocated: g.allocated,
            idle: g.idle,
            draining: g.draining,
            down: g.down,
            share: format!("{:.2}", g.allocated_milli as f64 / 1000.0),
        })
        .collect();
    let queue = summary
        .queue
        .into_iter()
        .map(|q| QueueRow {
            project: q.project_name,
            queued: q.queued_jobs as usize,
            running: q.running_jobs as usize,
            queued_gpus: q.queued_gpu_milli as f64 / 1000.0,
        })
        .collect();
    let series = usage_series(
        ctx,
        "org",
        ctx.t().usage_over_time_org,
        ctx.t().organisation,
        |l| &l.gpu_hours,
    )
    .await?;
    let page = FleetPage {
        base: ctx.base(&user),
        fleet,
        queue,
        nodes: node_rows,
        admin: user.role == api::Role::CentreAdmin,
        series,
    };
    Ok(render(&page))
}

/// A usage-over-time chart with its figures as a table, for the fleet and home pages.
struct SeriesView {
    /// The table's id (`series-org`, `series-project`).
    id: String,
    title: &'static str,
    chart: String,
    /// The table's first column head, then one per line.
    who: &'static str,
    names: Vec<String>,
    /// Days with any use: the day and one figure per line.
    rows: Vec<(String, Vec<String>)>,
    totals: Vec<String>,
}

/// The last 30 UTC days of `/v1/usage/series?by=BY`, drawn from the figures `values` picks
/// (GPU time run for operators, award hours charged for researchers).
async fn usage_series(
    ctx: &Ctx,
    by: &str,
    title: &'static str,
    who: &'static str,
    values: fn(&api::UsageLine) -> &[f64],
) -> Result<SeriesView, Refusal> {
    let s: api::UsageSeries = ctx
        .get(&format!("/v1/usage/series?by={by}&bucket=day"))
        .await?;
    let t = ctx.t();
    let ticks: Vec<String> = s
        .starts
        .iter()
        .map(|ms| utc(*ms)[5..10].to_string())
        .collect();
    let lines: Vec<(String, Vec<f64>)> = s
        .lines
        .iter()
        .map(|l| (l.name.clone(), values(l).to_vec()))
        .collect();
    let chart = chart::lines(
        &ticks,
        &lines,
        &chart::Axes {
            title,
            x: t.day_utc,
            y: t.gpu_hours,
        },
    );
    let rows = s
        .starts
        .iter()
        .enumerate()
        .filter(|(i, _)| lines.iter().any(|(_, v)| v[*i] != 0.0))
        .map(|(i, ms)| {
            (
                utc(*ms)[..10].to_string(),
                lines.iter().map(|(_, v)| chart::figure(v[i])).collect(),
            )
        })
        .collect();
    Ok(SeriesView {
        id: format!("series-{by}"),
        title,
        chart,
        who,
        totals: lines
            .iter()
            .map(|(_, v)| chart::figure(v.iter().sum()))
            .collect(),
        names: lines.into_iter().map(|(n, _)| n).collect(),
        rows,
    })
}

async fn node_action(
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ReasonForm>,
) -> Response {
    let result = async {
        let id = job_id(&id)?;
        let state = match action.as_str() {
            "drain" => "draining",
            "resume" => "up",
            _ => return Err(Refusal::NotFound),
        };
        // Draining takes capacity away, so it is confirmed with a reason; resuming is not.
        if state == "draining" && f.reason().is_none() {
            let user: api::User = ctx.get("/v1/whoami").await?;
            administrator(&user)?;
            let node: api::Node = ctx.get(&format!("/v1/nodes/{id}")).await?;
            let confirm = Confirmation {
                heading: format!("{} {}", ctx.t().drain, node.name),
                consequence: ctx.t().drain_consequence,
                action: format!("/portal/nodes/{id}/drain"),
                hidden: Vec::new(),
                back: "/portal/fleet".into(),
            };
            return Ok(confirm.page(&ctx, &user, &f));
        }
        ctx.call::<api::Node>(
            Method::POST,
            &format!("/v1/nodes/{id}/state"),
            Some(serde_json::json!({ "state": state, "reason": f.reason() })),
        )
        .await?;
        Ok(Redirect::to("/portal/fleet").into_response())
    };
    page!(ctx, result.await)
}

async fn pending_page(ctx: Ctx) -> Response {
    page!(ctx, pending_body(&ctx).await)
}

async fn pending_body(ctx: &Ctx) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    if !matches!(user.role, api::Role::CentreAdmin | api::Role::OrgAdmin) {
        return Err(Refusal::NotFound);
    }
    // The API shows an org admin only their organisation's users.
    let users: Vec<api::User> = ctx.get("/v1/users?pending=true").await?;
    let page = PendingPage {
        base: ctx.base(&user),
        users,
    };
    Ok(render(&page))
}

/// Approving lets someone in and is undone by no one, but it is what the page is for and names
/// one person, so it asks no confirmation; POST, then back to the list (POST-redirect-GET).
async fn approve_user(ctx: Ctx, Path(id): Path<String>) -> Response {
    let result = async {
        let id = job_id(&id)?;
        ctx.call::<serde_json::Value>(Method::POST, &format!("/v1/users/{id}/approve"), None)
            .await?;
        Ok(Redirect::to("/portal/users/pending").into_response())
    };
    page!(ctx, result.await)
}

async fn audit_page(ctx: Ctx, Query(filter): Query<AuditFilter>) -> Response {
    page!(ctx, audit_body(&ctx, filter).await)
}

async fn audit_body(ctx: &Ctx, filter: AuditFilter) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    if !sees_all(&user) {
        return Err(Refusal::NotFound);
    }
    // The whole log in pages of the API's largest size, filtered here as `haneul audit list`
    // does; newest first, at most 500 shown.
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<api::AuditEntry> = ctx
            .get(&format!("/v1/audit?after={after}&limit=10000"))
            .await?;
        let n = page.len();
        if let Some(last) = page.last() {
            after = last.seq;
        }
        all.extend(page);
        if n < 10_000 {
            break;
        }
    }
    let entries = all
        .into_iter()
        .rev()
        .filter(|e| filter.actor.is_empty() || e.actor.contains(filter.actor.trim()))
        .filter(|e| filter.action.is_empty() || e.action.starts_with(filter.action.trim()))
        .filter(|e| filter.target.is_empty() || e.target.contains(filter.target.trim()))
        .take(500)
        .map(|e| AuditRow {
            at: utc(e.at),
            entry: e,
        })
        .collect();
    Ok(render(&AuditPage {
        base: ctx.base(&user),
        filter,
        entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_charts_draw_one_line_per_gpu_without_inline_styles() {
        let minute = |minute: i64, uuid: &str, util: f64, mem: i64| api::GpuMinute {
            minute,
            uuid: uuid.into(),
            util_mean_pct: util,
            util_max_pct: util as i64,
            mem_max_mib: mem,
            power_mean_w: 100.0,
        };
        let e = api::JobEfficiency {
            job: 1,
            state: "running".into(),
            gpus_allocated: 2,
            gpus_used: 1,
            gpu_util_mean_pct: Some(50.0),
            gpu_util_max_pct: Some(100),
            gpu_mem_max_mib: Some(4000),
            energy_wh: 1.0,
            cpu_efficiency_pct: None,
            samples: 4,
            verdict: "used 1 of 2 GPUs; the other one stayed idle".into(),
            idle_notice: None,
            idle_stops_at: None,
            gpus: vec![],
            series: vec![
                minute(3_600_000, "GPU-a", 100.0, 4000),
                minute(3_600_000, "GPU-b", 0.0, 500),
                minute(3_660_000, "GPU-a", 90.0, 3900),
            ],
        };
        let svg = gpu_charts(&e);
        assert_eq!(svg.matches("<svg").count(), 2, "{svg}");
        assert!(svg.contains("GPU-a") && svg.contains("GPU-b"));
        assert!(svg.contains("01:00") && svg.contains("01:01"), "{svg}");
        // The portal's CSP refuses inline styles and scripts.
        assert!(!svg.contains("style=") && !svg.contains("<script"), "{svg}");
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_798_761_599_000), "2026-12-31 23:59:59");
    }

    #[test]
    fn elapsed_reads_as_hours_minutes_seconds() {
        assert_eq!(clock_text(0), "0:00:00");
        assert_eq!(clock_text(61_999), "0:01:01");
        assert_eq!(clock_text(90_061_000), "25:01:01");
    }

    #[test]
    fn origin_must_match_scheme_host_and_port() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8470".parse().unwrap());
        assert!(!same_origin(&h, None, false), "no Origin is refused");
        h.insert(header::ORIGIN, "http://127.0.0.1:8470".parse().unwrap());
        assert!(same_origin(&h, None, false));
        assert!(
            !same_origin(&h, None, true),
            "a plain-HTTP origin is refused by a server reached over TLS"
        );
        h.insert(header::ORIGIN, "https://127.0.0.1:8470".parse().unwrap());
        assert!(same_origin(&h, None, true));
        assert!(!same_origin(&h, None, false));
        h.insert(header::ORIGIN, "https://127.0.0.1:8471".parse().unwrap());
        assert!(
            !same_origin(&h, None, true),
            "another port is another origin"
        );
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h, None, false));
        // HTTP/2: no Host header, the authority says where the request went.
        let mut h2 = HeaderMap::new();
        h2.insert(header::ORIGIN, "https://centre.example".parse().unwrap());
        assert!(same_origin(&h2, Some("centre.example"), true));
        assert!(!same_origin(&h2, Some("other.example"), true));
    }

    #[test]
    fn submission_names_the_bad_field() {
        let f = SubmitForm {
            project: "1".into(),
            gpus: "two".into(),
            command: "true".into(),
            ..SubmitForm::default()
        };
        assert_eq!(submission(&f).unwrap_err().0, "gpus");
        let f = SubmitForm {
            project: "1".into(),
            ..SubmitForm::default()
        };
        assert_eq!(submission(&f).unwrap_err().0, "command");
    }
}
