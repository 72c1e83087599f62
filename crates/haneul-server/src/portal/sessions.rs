//! JupyterLab from the portal (docs/jupyter.md): the sessions page (the start form and the
//! list of one's sessions with their GPUs, time left and a stop button), and the proxy under
//! `/portal/sessions/ID/` that forwards the owner's HTTP requests and websockets to the
//! session's server on its node, adding the server's token itself.
//!
//! Starting and stopping go through the `/v1` API like every portal form, so a session is
//! checked as any job is. The proxy reads the store directly, as the portal's session check
//! does: only the job's owner passes (not another member of the project, not an operator),
//! and everyone else gets the same 404 as for a job that does not exist.

use super::job_id;
use super::{Base, Confirmation, Ctx, ReasonForm, Refusal, number, render};
use crate::AppState;
use crate::jupyter::{self, Endpoint, SESSION_NAME};
use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use haneul_api as api;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::time::Duration;

/// Largest request body forwarded to a session (a notebook saved, a file uploaded in
/// JupyterLab's chunks).
const MAX_REQUEST: usize = 64 * 1024 * 1024;
/// Largest response forwarded (a file downloaded from the session).
const MAX_RESPONSE: usize = 2 * 1024 * 1024 * 1024;
/// Connecting to a session's server on its node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A session's server must start answering within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the "starting" page reloads itself (a `Refresh` header: no script).
const STARTING_REFRESH_S: u32 = 2;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal/sessions", get(sessions_page).post(start_session))
        .route(
            "/portal/sessions/stop/{id}",
            get(|| async { Redirect::to("/portal/sessions") }).post(stop_session),
        )
        .route(
            "/portal/sessions/{id}",
            get(|Path(id): Path<String>| async move {
                Redirect::to(&format!("/portal/sessions/{id}/lab"))
            }),
        )
        .route("/portal/sessions/{id}/", any(proxy))
        .route("/portal/sessions/{id}/{*rest}", any(proxy))
}

/// Marks an answer that came from a session's server: the portal's own security headers
/// (its strict content security policy) are not put on it; the session's server sends its own.
#[derive(Clone, Copy)]
pub(super) struct Proxied;

// --- the page ---

#[derive(Debug, Default, Deserialize)]
struct StartForm {
    #[serde(default)]
    project: String,
    #[serde(default)]
    gpus: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    environment: String,
}

struct SessionRow {
    job: api::Job,
    /// Its project's name (the id where the caller may not read the project).
    project: String,
    /// `H:MM` left of its time limit, empty while it waits.
    left: String,
    /// JupyterLab answers (its agent reported where it listens).
    ready: bool,
}

impl SessionRow {
    fn gpus(&self) -> String {
        super::gpus_text(&self.job)
    }
}

#[derive(Template)]
#[template(path = "portal/sessions.html")]
struct SessionsPage {
    base: Base,
    projects: Vec<api::Project>,
    form: StartForm,
    error: Option<(String, String)>,
    sessions: Vec<SessionRow>,
    /// The idle time after which a session ends, in minutes.
    idle_minutes: u64,
}

impl SessionsPage {
    /// Whether the form's `field` is the one refused.
    fn invalid(&self, field: &str) -> bool {
        self.error.as_ref().is_some_and(|(f, _)| f == field)
    }

    fn explained(&self) -> String {
        self.base
            .t
            .lab_explained
            .replace("{idle}", &self.idle_minutes.to_string())
    }
}

/// The caller's sessions that have not ended, newest first.
async fn my_sessions(
    ctx: &Ctx,
    user: &api::User,
    projects: &[api::Project],
) -> Result<Vec<SessionRow>, Refusal> {
    let now = ctx.state.clock.now_ms();
    let mut rows: Vec<SessionRow> = Vec::new();
    // In the order a job moves through them: a job that moves on between two reads is then
    // read again in its next state (and kept once), never missed. Read the other way round, a
    // session that started between the reads was in neither list, and the page said there
    // was none just after it was started.
    for state in ["queued", "running", "stopping"] {
        let list: api::JobList = ctx
            .get(&format!("/v1/jobs?state={state}&limit=1000"))
            .await?;
        for job in list.jobs {
            if job.user != user.id || job.name != SESSION_NAME {
                continue;
            }
            // The later state is the newer news.
            rows.retain(|r| r.job.id != job.id);
            let mut left = String::new();
            if job.state != "queued" {
                let detail: api::JobDetail = ctx.get(&format!("/v1/jobs/{}", job.id)).await?;
                let started = detail
                    .attempts
                    .iter()
                    .find(|a| a.fence == job.attempts)
                    .and_then(|a| a.started_at);
                if let (Some(at), Some(limit)) = (started, job.time_limit_s) {
                    left = super::clock_text(at + limit as i64 * 1000 - now)
                        .rsplit_once(':')
                        .map(|(hm, _)| hm.to_string())
                        .unwrap_or_default();
                }
            }
            let ready = ctx.state.endpoints.get(job.id, job.attempts).is_some();
            let project = projects
                .iter()
                .find(|p| p.id == job.project)
                .map_or_else(|| job.project.to_string(), |p| p.name.clone());
            rows.push(SessionRow {
                job,
                project,
                left,
                ready,
            });
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.job.id));
    Ok(rows)
}

async fn sessions_body(
    ctx: &Ctx,
    form: StartForm,
    error: Option<(String, String)>,
) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
    let projects: Vec<api::Project> = projects
        .into_iter()
        .filter(|p| user.projects.contains(&p.id))
        .collect();
    let sessions = my_sessions(ctx, &user, &projects).await?;
    let page = SessionsPage {
        base: ctx.base(&user),
        projects,
        form,
        sessions,
        idle_minutes: ctx.state.jupyter_idle.as_secs().div_ceil(60),
        error: error.clone(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, render(&page)).into_response())
}

async fn sessions_page(ctx: Ctx) -> Response {
    let r = sessions_body(&ctx, StartForm::default(), None).await;
    r.unwrap_or_else(|refusal| ctx.refused(refusal))
}

/// The job a start form asks for, or the field at fault.
fn session_job(f: &StartForm, idle: Duration) -> Result<serde_json::Value, (String, String)> {
    let project = number("project", &f.project, 0)?;
    if project == 0 {
        return Err(("project".into(), "choose a project".into()));
    }
    let gpus = number("gpus", &f.gpus, 1)?;
    let hours = f.hours.trim();
    let seconds = match hours.parse::<f64>() {
        _ if hours.is_empty() => 3600,
        Ok(h) if h.is_finite() && h > 0.0 && h <= 10_000.0 => (h * 3600.0).round() as u64,
        _ => {
            return Err((
                "hours".into(),
                format!("`{hours}` is not a positive number of hours (0.5 is half an hour)"),
            ));
        }
    };
    let environment = f.environment.trim();
    if !environment.is_empty() && !jupyter::environment_ok(environment) {
        return Err((
            "environment".into(),
            "give the absolute path of a Python environment on the nodes (letters, digits and \
             / . _ - + @ only), for example /opt/envs/lab"
                .into(),
        ));
    }
    let mut body = serde_json::json!({
        "project": project,
        "name": SESSION_NAME,
        "command": ["sh", "-c", jupyter::command(Some(environment).filter(|e| !e.is_empty()), idle)],
        "gpus_per_task": gpus,
        "time_limit_s": seconds,
    });
    if !f.image.trim().is_empty() {
        body["container_image"] = serde_json::json!(f.image.trim());
    }
    Ok(body)
}

/// The form's field for a field the API named.
fn form_field(api_field: &str) -> &str {
    match api_field {
        "gpus_per_task" | "gpu_fraction_milli" => "gpus",
        "time_limit_s" => "hours",
        "container_image" => "image",
        other => other,
    }
}

async fn start_session(ctx: Ctx, Form(f): Form<StartForm>) -> Response {
    let body = match session_job(&f, ctx.state.jupyter_idle) {
        Ok(b) => b,
        Err(e) => {
            let r = sessions_body(&ctx, f, Some(e)).await;
            return r.unwrap_or_else(|refusal| ctx.refused(refusal));
        }
    };
    let r = match ctx
        .call::<api::Job>(Method::POST, "/v1/jobs", Some(body))
        .await
    {
        Ok(_) => return Redirect::to("/portal/sessions").into_response(),
        Err(Refusal::Bad { field, message }) => {
            let field = form_field(&field).to_string();
            sessions_body(&ctx, f, Some((field, message))).await
        }
        Err(Refusal::Forbidden(message)) => {
            sessions_body(&ctx, f, Some(("project".into(), message))).await
        }
        Err(r) => Err(r),
    };
    r.unwrap_or_else(|refusal| ctx.refused(refusal))
}

/// Stops a session: confirmed with a reason like every destructive action, then the job is
/// cancelled through the API (its owner may; the API says so for anyone else).
async fn stop_session(ctx: Ctx, Path(id): Path<String>, Form(f): Form<ReasonForm>) -> Response {
    let result = async {
        let id = job_id(&id)?;
        let user: api::User = ctx.get("/v1/whoami").await?;
        let Some(reason) = f.reason() else {
            let detail: api::JobDetail = ctx.get(&format!("/v1/jobs/{id}")).await?;
            if detail.job.user != user.id || detail.job.name != SESSION_NAME {
                return Err(Refusal::NotFound);
            }
            let confirm = Confirmation {
                heading: format!("{} {id}", ctx.t().stop_session),
                consequence: ctx.t().stop_session_consequence,
                action: format!("/portal/sessions/stop/{id}"),
                hidden: Vec::new(),
                back: "/portal/sessions".into(),
            };
            return Ok(confirm.page(&ctx, &user, &f));
        };
        ctx.call::<api::Job>(
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            Some(serde_json::json!({ "reason": reason })),
        )
        .await?;
        ctx.state.endpoints.forget(id);
        Ok(Redirect::to("/portal/sessions").into_response())
    };
    result.await.unwrap_or_else(|refusal| ctx.refused(refusal))
}

// --- the proxy ---

/// Where a request to `/portal/sessions/ID/...` goes, or the page to show instead.
/// (The request's parts, not the request: its body is not `Sync`, and this waits on the store.)
async fn target(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(i64, Endpoint), Response> {
    let t = ctx.t();
    let Some(user) = &ctx.user else {
        return Err(if method == Method::GET {
            Redirect::to("/portal/signin").into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        });
    };
    // Writes other than POST (JupyterLab saves with PUT, deletes with DELETE) get the Origin
    // check the portal's extractor gives POSTs.
    if !matches!(*method, Method::GET | Method::HEAD | Method::POST)
        && !super::same_origin(
            headers,
            uri.authority().map(|a| a.as_str()),
            ctx.state.sessions.secure_cookie,
        )
    {
        return Err((
            StatusCode::FORBIDDEN,
            "the Origin header must be this server",
        )
            .into_response());
    }
    let id = uri
        .path()
        .strip_prefix("/portal/sessions/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0);
    let job = match id {
        Some(id) => ctx.state.store.get_job(id).await.ok(),
        None => None,
    };
    // Another person's session, an operator's look included, is as absent as a job that does
    // not exist: the session holds its owner's files and kernels, and acting in it is acting
    // as them. Operators stop a session by cancelling its job.
    let Some(job) = job.filter(|j| j.user_id == user.id && j.name == SESSION_NAME) else {
        return Err(ctx.refused(Refusal::NotFound));
    };
    let starting = || {
        let page = super::ErrorPage {
            base: ctx.anonymous_base(),
            heading: t.session_starting,
            message: t.session_starting_help.to_string(),
        };
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, render(&page)).into_response();
        r.headers_mut()
            .insert(header::REFRESH, HeaderValue::from(STARTING_REFRESH_S));
        r
    };
    // A stopping session is as good as ended: its server is being shut down.
    if job.state.is_terminal() || job.state == haneul_store::JobState::Stopping {
        let page = super::ErrorPage {
            base: ctx.anonymous_base(),
            heading: t.session_ended,
            message: t.session_ended_help.to_string(),
        };
        return Err((StatusCode::GONE, render(&page)).into_response());
    }
    if job.state == haneul_store::JobState::Queued {
        return Err(starting());
    }
    match ctx.state.endpoints.get(job.id, job.attempts) {
        Some(e) => Ok((job.id, e)),
        None => Err(starting()),
    }
}

/// Headers that belong to one connection, not to the request or answer passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The browser's cookies less the portal's own: the session's server is the user's code and
/// has no business with the portal's session id.
fn cookies_for_session(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or_default();
            !kv.is_empty() && name != super::SESSION_COOKIE && name != super::LANG_COOKIE
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// Forwards one request (or websocket) of the session's owner to its server.
async fn proxy(ctx: Ctx, mut req: Request) -> Response {
    let (job, ep) = match target(&ctx, req.method(), req.headers(), req.uri()).await {
        Ok(t) => t,
        Err(page) => return page,
    };
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut upstream = hyper::Request::builder()
        .method(req.method().clone())
        .uri(path)
        .version(axum::http::Version::HTTP_11);
    for (name, value) in req.headers() {
        if hop_by_hop(name)
            || name == header::HOST
            || name == header::COOKIE
            || name == header::AUTHORIZATION
            || name.as_str() == "forwarded"
            || name.as_str().starts_with("x-forwarded-")
        {
            continue;
        }
        upstream = upstream.header(name, value);
    }
    if let Some(h) = host {
        upstream = upstream.header(header::HOST, h);
    }
    if let Some(c) = cookies_for_session(req.headers()) {
        upstream = upstream.header(header::COOKIE, c);
    }
    upstream = upstream.header(header::AUTHORIZATION, format!("token {}", ep.token));
    if websocket {
        upstream = upstream
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket");
    }
    let body = Limited::new(req.into_body(), MAX_REQUEST);
    let upstream = match upstream.body(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut answer = match send(&ep, upstream).await {
        Ok(a) => a,
        Err(why) => {
            tracing::info!(job, host = %ep.host, port = ep.port, "session not reached: {why}");
            let t = ctx.t();
            let page = super::ErrorPage {
                base: ctx.anonymous_base(),
                heading: t.session_starting,
                message: t.session_starting_help.to_string(),
            };
            let mut r = (StatusCode::BAD_GATEWAY, render(&page)).into_response();
            r.headers_mut()
                .insert(header::REFRESH, HeaderValue::from(STARTING_REFRESH_S));
            return r;
        }
    };
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return StatusCode::BAD_GATEWAY.into_response();
        };
        let session_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            let (Ok(client), Ok(session)) = tokio::join!(client_upgrade, session_upgrade) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut session = TokioIo::new(session);
            // Bytes as they come, both ways, until either side closes; the session's server
            // pings every 30 s (its command says so), which keeps an idle tab's socket open.
            let _ = tokio::io::copy_bidirectional(&mut client, &mut session).await;
        });
        let (parts, _) = answer.into_parts();
        let mut r = Response::from_parts(parts, Body::empty());
        r.extensions_mut().insert(Proxied);
        return r;
    }
    let (mut parts, incoming) = answer.into_parts();
    // The answer's connection headers are for the hop to the session; hyper writes the
    // browser's own.
    let hop: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| hop_by_hop(n))
        .cloned()
        .collect();
    for name in hop {
        parts.headers.remove(name);
    }
    let mut r = Response::from_parts(
        parts,
        Body::new(Limited::new(incoming, MAX_RESPONSE).map_err(axum::Error::new)),
    );
    r.extensions_mut().insert(Proxied);
    r
}

/// One request over a new HTTP/1.1 connection to the session's server, bounded in time until
/// its answer's head.
async fn send(
    ep: &Endpoint,
    req: hyper::Request<Limited<Body>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| format!("request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_form_names_its_bad_fields() {
        let ok = StartForm {
            project: "3".into(),
            gpus: "2".into(),
            hours: "1.5".into(),
            environment: "/opt/lab".into(),
            ..Default::default()
        };
        let job = session_job(&ok, Duration::from_secs(900)).unwrap();
        assert_eq!(job["time_limit_s"], 5400);
        assert_eq!(job["gpus_per_task"], 2);
        assert_eq!(job["name"], SESSION_NAME);
        let script = job["command"][2].as_str().unwrap();
        assert!(script.contains("PATH='/opt/lab/bin'"));
        assert!(script.contains("shutdown_no_activity_timeout=900"));
        for (form, field) in [
            (
                StartForm {
                    project: "3".into(),
                    hours: "0".into(),
                    ..Default::default()
                },
                "hours",
            ),
            (
                StartForm {
                    project: "3".into(),
                    hours: "two".into(),
                    ..Default::default()
                },
                "hours",
            ),
            (
                StartForm {
                    project: "3".into(),
                    gpus: "-1".into(),
                    ..Default::default()
                },
                "gpus",
            ),
            (
                StartForm {
                    project: "".into(),
                    ..Default::default()
                },
                "project",
            ),
            (
                StartForm {
                    project: "3".into(),
                    environment: "/opt/x;reboot".into(),
                    ..Default::default()
                },
                "environment",
            ),
        ] {
            assert_eq!(
                session_job(&form, Duration::from_secs(60)).unwrap_err().0,
                field
            );
        }
    }

    #[test]
    fn the_portal_cookies_stay_with_the_portal() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("haneul_session=abc; _xsrf=2|x; haneul_lang=ko; username-x=y"),
        );
        assert_eq!(
            cookies_for_session(&h).unwrap().to_str().unwrap(),
            "_xsrf=2|x; username-x=y"
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("haneul_session=abc"),
        );
        assert!(cookies_for_session(&h).is_none());
    }
}
