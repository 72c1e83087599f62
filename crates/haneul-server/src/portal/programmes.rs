//! The portal's programme pages: calls (centre admins create, open and close them), a call's
//! tracks and applications (an organisation's admin applies for a project, centre admins
//! record reviewers' scores and award the call), and the monthly statement with its CSV.
//!
//! Like every portal page these own no policy: each asks the `/v1` API with the session's
//! token, so an application of another tenant is simply absent here as it is there, and a
//! refused field comes back to its form by the API's name for it.

use super::i18n::Texts;
// A path id: a positive number, else the page is not there.
use super::job_id as path_id;
use super::{Base, Confirmation, Ctx, ReasonForm, Refusal, number, render, utc};
use crate::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use haneul_api as api;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The routes of these pages, merged into the portal's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal/calls", get(calls_page).post(create_call))
        .route("/portal/calls/{id}", get(call_page))
        .route(
            "/portal/calls/{id}/state",
            get(to_call).post(set_call_state),
        )
        .route("/portal/calls/{id}/applications", get(to_call).post(apply))
        .route(
            "/portal/calls/{id}/applications/{app}/scores",
            get(|Path((id, app)): Path<(i64, i64)>| async move {
                Redirect::to(&format!("/portal/calls/{id}#app-{app}"))
            })
            .post(score),
        )
        .route("/portal/calls/{id}/award", get(to_call).post(award_call))
        .route("/portal/statements", get(statements_page))
        .route("/portal/statements.csv", get(statement_csv))
}

/// A form's address opened as a page (reloaded, bookmarked, typed) shows the call it belongs
/// to instead of a bare 405.
async fn to_call(Path(id): Path<i64>) -> Redirect {
    Redirect::to(&format!("/portal/calls/{id}"))
}

/// A field at fault and why, as the API (or the form's own parsing) names it.
type FieldError = (String, String);

/// A page body's result as its page: what the parent's `page!` does, which is defined after
/// this module is declared and so is not in scope here.
fn finish(ctx: &Ctx, r: Result<Response, Refusal>) -> Response {
    r.unwrap_or_else(|refusal| ctx.refused(refusal))
}

fn whole(field: &str, raw: &str, default: u64) -> Result<i64, FieldError> {
    number(field, raw, default).map(|n| n as i64)
}

fn call_state_text(t: &Texts, state: &str) -> &'static str {
    match state {
        "open" => t.state_open,
        "closed" => t.state_closed,
        "awarded" => t.state_call_awarded,
        _ => t.state,
    }
}

fn application_state_text(t: &Texts, state: &str) -> &'static str {
    match state {
        "submitted" => t.state_submitted,
        "awarded" => t.state_app_awarded,
        "declined" => t.state_declined,
        _ => t.state,
    }
}

fn project_names(projects: &[api::Project]) -> BTreeMap<i64, String> {
    projects.iter().map(|p| (p.id, p.name.clone())).collect()
}

fn name_of(names: &BTreeMap<i64, String>, id: i64) -> String {
    names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
}

// --- the list of calls ---

/// The form for a new call: the call and up to two tracks (`t1_*`, `t2_*`; the second is
/// left out when its name is empty). Kept as typed when refused.
#[derive(Debug, Default, Deserialize)]
struct CallForm {
    #[serde(default)]
    programme: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    gpu_model: String,
    #[serde(default)]
    capacity_gpus: String,
    #[serde(default)]
    t1_name: String,
    #[serde(default)]
    t1_min: String,
    #[serde(default)]
    t1_max: String,
    #[serde(default)]
    t1_days: String,
    #[serde(default)]
    t1_whole: Option<String>,
    #[serde(default)]
    t1_server: String,
    #[serde(default)]
    t1_cap: String,
    #[serde(default)]
    t1_region: String,
    #[serde(default)]
    t2_name: String,
    #[serde(default)]
    t2_min: String,
    #[serde(default)]
    t2_max: String,
    #[serde(default)]
    t2_days: String,
    #[serde(default)]
    t2_whole: Option<String>,
    #[serde(default)]
    t2_server: String,
    #[serde(default)]
    t2_cap: String,
    #[serde(default)]
    t2_region: String,
}

/// One track's inputs, as the template lays them out and as the API is sent them.
struct TrackInputs<'a> {
    /// `t1` or `t2`: the prefix of the inputs' names and ids.
    prefix: &'static str,
    /// Index in the API's `tracks` list, for naming a field at fault.
    index: usize,
    name: &'a str,
    min: &'a str,
    max: &'a str,
    days: &'a str,
    whole: bool,
    server: &'a str,
    cap: &'a str,
    region: &'a str,
}

impl CallForm {
    fn tracks(&self) -> [TrackInputs<'_>; 2] {
        [
            TrackInputs {
                prefix: "t1",
                index: 0,
                name: &self.t1_name,
                min: &self.t1_min,
                max: &self.t1_max,
                days: &self.t1_days,
                whole: self.t1_whole.is_some(),
                server: &self.t1_server,
                cap: &self.t1_cap,
                region: &self.t1_region,
            },
            TrackInputs {
                prefix: "t2",
                index: 1,
                name: &self.t2_name,
                min: &self.t2_min,
                max: &self.t2_max,
                days: &self.t2_days,
                whole: self.t2_whole.is_some(),
                server: &self.t2_server,
                cap: &self.t2_cap,
                region: &self.t2_region,
            },
        ]
    }

    /// The `POST /v1/calls` body; a field that is not a number is named as the API names it.
    fn body(&self) -> Result<Value, FieldError> {
        let mut tracks = Vec::new();
        for t in self.tracks() {
            // The first track is always sent, so that an empty one is refused by name.
            if t.index > 0 && t.name.trim().is_empty() {
                continue;
            }
            let i = tracks.len();
            let f = |name: &str| format!("tracks[{i}].{name}");
            let mut track = json!({
                "name": t.name.trim(),
                "min_gpus": whole(&f("min_gpus"), t.min, 1)?,
                "max_gpus": whole(&f("max_gpus"), t.max, 0)?,
                "max_days": whole(&f("max_days"), t.days, 0)?,
                "whole_server": t.whole,
                "server_gpus": whole(&f("server_gpus"), t.server, 8)?,
            });
            if !t.cap.trim().is_empty() {
                track["per_org_cap_gpus"] = json!(whole(&f("per_org_cap_gpus"), t.cap, 0)?);
            }
            if !t.region.trim().is_empty() {
                track["region"] = json!(t.region.trim());
            }
            tracks.push(track);
        }
        Ok(json!({
            "programme": self.programme.trim(),
            "name": self.name.trim(),
            "gpu_model": self.gpu_model.trim(),
            "capacity_gpus": whole("capacity_gpus", &self.capacity_gpus, 0)?,
            "tracks": tracks,
        }))
    }
}

struct CallRow {
    call: api::Call,
    state: &'static str,
    /// The caller's projects' applications to it (for those who do not see all).
    mine: Vec<String>,
}

#[derive(Template)]
#[template(path = "portal/calls.html")]
struct CallsPage {
    base: Base,
    rows: Vec<CallRow>,
    /// A centre admin: creates, opens and closes calls.
    admin: bool,
    form: CallForm,
    error: Option<FieldError>,
}

impl CallsPage {
    fn invalid(&self, field: &str) -> bool {
        self.error.as_ref().is_some_and(|(f, _)| f == field)
    }
    /// Whether the error names this track's input (`tracks[i].name` for `t(i+1)_name`...).
    fn invalid_track(&self, index: &usize, field: &str) -> bool {
        self.invalid(&format!("tracks[{index}].{field}"))
    }
}

async fn calls_page(ctx: Ctx) -> Response {
    finish(&ctx, calls_body(&ctx, CallForm::default(), None).await)
}

async fn calls_body(
    ctx: &Ctx,
    form: CallForm,
    error: Option<FieldError>,
) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    let calls: Vec<api::Call> = ctx.get("/v1/calls").await?;
    let everything = super::sees_all(&user);
    let mut rows = Vec::new();
    for call in calls {
        let mut mine = Vec::new();
        if !everything {
            // Others see the open calls, and those their projects applied to.
            let apps: Vec<api::Application> = ctx
                .get(&format!("/v1/calls/{}/applications", call.id))
                .await?;
            if call.state != "open" && apps.is_empty() {
                continue;
            }
            mine = apps
                .iter()
                .map(|a| format!("#{} {}", a.id, application_state_text(ctx.t(), &a.state)))
                .collect();
        }
        rows.push(CallRow {
            state: call_state_text(ctx.t(), &call.state),
            call,
            mine,
        });
    }
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = CallsPage {
        base: ctx.base(&user),
        rows,
        admin: user.role == api::Role::CentreAdmin,
        form,
        error,
    };
    Ok((status, render(&page)).into_response())
}

async fn create_call(ctx: Ctx, Form(f): Form<CallForm>) -> Response {
    let body = match f.body() {
        Ok(b) => b,
        Err(e) => return finish(&ctx, calls_body(&ctx, f, Some(e)).await),
    };
    match ctx
        .call::<api::Call>(Method::POST, "/v1/calls", Some(body))
        .await
    {
        Ok(call) => Redirect::to(&format!("/portal/calls/{}", call.id)).into_response(),
        Err(Refusal::Bad { field, message }) => {
            finish(&ctx, calls_body(&ctx, f, Some((field, message))).await)
        }
        Err(r) => ctx.refused(r),
    }
}

#[derive(Deserialize)]
struct StateForm {
    #[serde(default)]
    state: String,
    #[serde(flatten)]
    why: ReasonForm,
}

async fn set_call_state(ctx: Ctx, Path(id): Path<String>, Form(f): Form<StateForm>) -> Response {
    let result = async {
        let id = path_id(&id)?;
        // Closing turns applicants away, so it is confirmed with a reason; reopening is not.
        if f.state == "closed" && f.why.reason().is_none() {
            let user: api::User = ctx.get("/v1/whoami").await?;
            super::administrator(&user)?;
            let call: api::Call = ctx.get(&format!("/v1/calls/{id}")).await?;
            let confirm = Confirmation {
                heading: format!("{} {}", ctx.t().close_call, call.name),
                consequence: ctx.t().close_consequence,
                action: format!("/portal/calls/{id}/state"),
                hidden: vec![("state", f.state.clone())],
                back: "/portal/calls".into(),
            };
            return Ok(confirm.page(&ctx, &user, &f.why));
        }
        ctx.call::<api::Call>(
            Method::POST,
            &format!("/v1/calls/{id}/state"),
            Some(json!({ "state": f.state, "reason": f.why.reason() })),
        )
        .await?;
        Ok(Redirect::to("/portal/calls").into_response())
    };
    finish(&ctx, result.await)
}

// --- one call ---

/// The application form, kept as typed when refused.
#[derive(Debug, Default, Deserialize)]
struct ApplyForm {
    #[serde(default)]
    project: String,
    #[serde(default)]
    track: String,
    #[serde(default)]
    gpus: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    plan: String,
}

impl ApplyForm {
    fn body(&self) -> Result<Value, FieldError> {
        let project = whole("project", &self.project, 0)?;
        if project == 0 {
            return Err(("project".into(), "choose a project".into()));
        }
        let mut body = json!({
            "project": project,
            "track": self.track.trim(),
            "gpus": whole("gpus", &self.gpus, 0)?,
            "days": whole("days", &self.days, 0)?,
            "plan": self.plan.trim(),
        });
        if !self.region.trim().is_empty() {
            body["region"] = json!(self.region.trim());
        }
        Ok(body)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ScoreForm {
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    score: String,
    #[serde(default)]
    comment: String,
}

struct TrackRow {
    track: api::Track,
    cap: String,
    region: String,
}

struct AppRow {
    app: api::Application,
    project: String,
    state: &'static str,
    mean: String,
    scores: String,
    /// (reviewer, comment) for each score that came with one.
    comments: Vec<(String, String)>,
}

struct AwardedRow {
    award: api::Award,
    project: String,
    valid_until: String,
}

struct DeclinedRow {
    application: i64,
    project: String,
    reason: String,
}

/// What awarding the call did, from the API's answer: it is not kept anywhere else.
struct Outcome {
    awarded: Vec<AwardedRow>,
    declined: Vec<DeclinedRow>,
}

/// What a POST adds to the call page it renders: the form as typed, the error, the outcome.
#[derive(Default)]
struct Extras {
    form: ApplyForm,
    apply_error: Option<FieldError>,
    /// The application whose score was refused, and why.
    score_error: Option<(i64, String, String)>,
    award_error: Option<FieldError>,
    outcome: Option<Outcome>,
}

impl Extras {
    fn failed(&self) -> bool {
        self.apply_error.is_some() || self.score_error.is_some() || self.award_error.is_some()
    }
}

#[derive(Template)]
#[template(path = "portal/call.html")]
struct CallPage {
    base: Base,
    call: api::Call,
    state: &'static str,
    tracks: Vec<TrackRow>,
    apps: Vec<AppRow>,
    /// Centre admins and auditors: every application, with its scores.
    everything: bool,
    /// A centre admin: scores, awards.
    admin: bool,
    /// The call is open and the caller may apply for some project (a centre admin, or an
    /// organisation's admin for its own projects).
    may_apply: bool,
    projects: Vec<api::Project>,
    reviewer: String,
    extras: Extras,
}

impl CallPage {
    fn apply_invalid(&self, field: &str) -> bool {
        self.extras
            .apply_error
            .as_ref()
            .is_some_and(|(f, _)| f == field)
    }
    fn score_error_for(&self, app: &i64) -> Option<(String, String)> {
        self.extras
            .score_error
            .as_ref()
            .filter(|(a, _, _)| a == app)
            .map(|(_, f, m)| (f.clone(), m.clone()))
    }
    fn awardable(&self) -> bool {
        self.admin && self.call.state != "awarded"
    }
}

async fn call_page(ctx: Ctx, Path(id): Path<String>) -> Response {
    let result = async {
        let id = path_id(&id)?;
        call_body(&ctx, id, Extras::default()).await
    };
    finish(&ctx, result.await)
}

async fn call_body(ctx: &Ctx, id: i64, extras: Extras) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    let call: api::Call = ctx.get(&format!("/v1/calls/{id}")).await?;
    let apps: Vec<api::Application> = ctx.get(&format!("/v1/calls/{id}/applications")).await?;
    let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
    let names = project_names(&projects);
    let everything = super::sees_all(&user);
    let t = ctx.t();
    let apps = apps
        .into_iter()
        .map(|a| AppRow {
            project: name_of(&names, a.project),
            state: application_state_text(t, &a.state),
            mean: a.mean_score.map(|m| format!("{m:.2}")).unwrap_or_default(),
            scores: a
                .scores
                .iter()
                .map(|s| format!("{}: {}", s.reviewer, s.score))
                .collect::<Vec<_>>()
                .join(", "),
            comments: a
                .scores
                .iter()
                .filter(|s| !s.comment.trim().is_empty())
                .map(|s| (s.reviewer.clone(), s.comment.clone()))
                .collect(),
            app: a,
        })
        .collect();
    let tracks = call
        .tracks
        .iter()
        .map(|tr| TrackRow {
            cap: tr
                .per_org_cap_gpus
                .map(|c| c.to_string())
                .unwrap_or_default(),
            region: tr.region.clone().unwrap_or_default(),
            track: tr.clone(),
        })
        .collect();
    // Only the organisation's admin (or a centre admin) applies: members are told so rather
    // than shown a form the API would refuse.
    let applicant = matches!(user.role, api::Role::CentreAdmin | api::Role::OrgAdmin);
    let status = if extras.failed() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = CallPage {
        base: ctx.base(&user),
        state: call_state_text(t, &call.state),
        may_apply: applicant && call.state == "open" && !projects.is_empty(),
        tracks,
        apps,
        everything,
        admin: user.role == api::Role::CentreAdmin,
        projects,
        reviewer: user.name.clone(),
        call,
        extras,
    };
    Ok((status, render(&page)).into_response())
}

async fn apply(ctx: Ctx, Path(id): Path<String>, Form(f): Form<ApplyForm>) -> Response {
    let result = async {
        let id = path_id(&id)?;
        let refused = |form, e| Extras {
            form,
            apply_error: Some(e),
            ..Extras::default()
        };
        let body = match f.body() {
            Ok(b) => b,
            Err(e) => return call_body(&ctx, id, refused(f, e)).await,
        };
        match ctx
            .call::<api::Application>(
                Method::POST,
                &format!("/v1/calls/{id}/applications"),
                Some(body),
            )
            .await
        {
            Ok(a) => Ok(Redirect::to(&format!("/portal/calls/{id}#app-{}", a.id)).into_response()),
            Err(Refusal::Bad { field, message }) => {
                call_body(&ctx, id, refused(f, (field, message))).await
            }
            // The API forbids applying for a project one does not administer: that is the
            // project field's fault, shown at the form.
            Err(Refusal::Forbidden(message)) => {
                call_body(&ctx, id, refused(f, ("project".into(), message))).await
            }
            Err(r) => Err(r),
        }
    };
    finish(&ctx, result.await)
}

async fn score(
    ctx: Ctx,
    Path((id, app)): Path<(String, String)>,
    Form(f): Form<ScoreForm>,
) -> Response {
    let result = async {
        let id = path_id(&id)?;
        let app = path_id(&app)?;
        let refused = |field: String, message: String| Extras {
            score_error: Some((app, field, message)),
            ..Extras::default()
        };
        let score = match f.score.trim().parse::<i64>() {
            Ok(s) => s,
            Err(_) => {
                let message = format!("`{}` is not a whole number from 0 to 10", f.score.trim());
                return call_body(&ctx, id, refused("score".into(), message)).await;
            }
        };
        let mut body = json!({ "score": score, "comment": f.comment.trim() });
        if !f.reviewer.trim().is_empty() {
            body["reviewer"] = json!(f.reviewer.trim());
        }
        match ctx
            .call::<api::Application>(
                Method::POST,
                &format!("/v1/applications/{app}/scores"),
                Some(body),
            )
            .await
        {
            Ok(_) => Ok(Redirect::to(&format!("/portal/calls/{id}#app-{app}")).into_response()),
            Err(Refusal::Bad { field, message }) => {
                call_body(&ctx, id, refused(field, message)).await
            }
            Err(r) => Err(r),
        }
    };
    finish(&ctx, result.await)
}

async fn award_call(ctx: Ctx, Path(id): Path<String>, Form(f): Form<ReasonForm>) -> Response {
    let result = async {
        let id = path_id(&id)?;
        // Awarding cannot be undone: confirmed with a reason first.
        let Some(reason) = f.reason() else {
            let user: api::User = ctx.get("/v1/whoami").await?;
            super::administrator(&user)?;
            let call: api::Call = ctx.get(&format!("/v1/calls/{id}")).await?;
            let confirm = Confirmation {
                heading: format!("{} {}", ctx.t().award_call, call.name),
                consequence: ctx.t().award_call_help,
                action: format!("/portal/calls/{id}/award"),
                hidden: Vec::new(),
                back: format!("/portal/calls/{id}"),
            };
            return Ok(confirm.page(&ctx, &user, &f));
        };
        let answer = ctx
            .call::<api::CallAwarded>(
                Method::POST,
                &format!("/v1/calls/{id}/award"),
                Some(json!({ "reason": reason })),
            )
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(Refusal::Bad { field, message }) => {
                let extras = Extras {
                    award_error: Some((field, message)),
                    ..Extras::default()
                };
                return call_body(&ctx, id, extras).await;
            }
            Err(r) => return Err(r),
        };
        let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
        let names = project_names(&projects);
        let apps: Vec<api::Application> = ctx.get(&format!("/v1/calls/{id}/applications")).await?;
        let project_of = |app: i64| {
            apps.iter()
                .find(|a| a.id == app)
                .map(|a| name_of(&names, a.project))
                .unwrap_or_default()
        };
        let outcome = Outcome {
            declined: answer
                .declined
                .into_iter()
                .map(|d| DeclinedRow {
                    project: project_of(d.application),
                    application: d.application,
                    reason: d.reason,
                })
                .collect(),
            awarded: answer
                .awards
                .into_iter()
                .map(|a| AwardedRow {
                    project: name_of(&names, a.project),
                    valid_until: utc(a.valid_until)[..10].to_string(),
                    award: a,
                })
                .collect(),
        };
        let extras = Extras {
            outcome: Some(outcome),
            ..Extras::default()
        };
        call_body(&ctx, id, extras).await
    };
    finish(&ctx, result.await)
}

// --- statements ---

/// The statement's choice: a project (empty: all the caller's) and a month (empty: this one).
/// Kept as strings so that a bad value is named, not a bare 400.
#[derive(Debug, Default, Deserialize)]
struct StatementQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    month: String,
}

impl StatementQuery {
    /// The query with no month asked for read as the month of `now` (UTC).
    fn or_month_of(mut self, now: i64) -> Self {
        if self.month.trim().is_empty() {
            self.month = utc(now)[..7].to_string();
        }
        self
    }

    /// The month asked for.
    fn month(&self) -> String {
        self.month.trim().to_string()
    }

    /// The `/v1/statements` query; a value that cannot be one is refused by its field's name.
    fn api_uri(&self) -> Result<String, FieldError> {
        let month = self.month();
        // Checked here only so far as it is safe to put in a URL; the API checks the rest.
        if !month.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Err((
                "month".into(),
                format!("`{month}` is not a month: use YYYY-MM, for example 2026-12"),
            ));
        }
        let project = whole("project", &self.project, 0)?;
        Ok(if project > 0 {
            format!("/v1/statements?month={month}&project={project}")
        } else {
            format!("/v1/statements?month={month}")
        })
    }

    fn csv_href(&self) -> String {
        let mut href = format!("/portal/statements.csv?month={}", self.month());
        if let Ok(p) = self.project.trim().parse::<i64>() {
            href.push_str(&format!("&project={p}"));
        }
        href
    }
}

struct LineRow {
    line: api::StatementLine,
    project: String,
    org: String,
}

const MS_PER_HOUR: f64 = 3_600_000.0;

#[derive(Template)]
#[template(path = "portal/statements.html")]
struct StatementsPage {
    base: Base,
    projects: Vec<api::Project>,
    project: String,
    month: String,
    error: Option<FieldError>,
    statement: Option<api::Statement>,
    lines: Vec<LineRow>,
    csv_href: String,
}

impl StatementsPage {
    fn gpu_hours(&self) -> f64 {
        self.lines.iter().map(|l| l.line.gpu_hours).sum()
    }
    fn measured(&self) -> f64 {
        self.lines.iter().map(|l| l.line.used_gpu_hours).sum()
    }
    fn unmeasured(&self) -> f64 {
        self.lines.iter().map(|l| l.line.unmeasured_gpu_hours).sum()
    }
    fn energy(&self) -> f64 {
        self.lines.iter().map(|l| l.line.energy_kwh).sum()
    }
    fn hours(&self, ms: &i64) -> f64 {
        *ms as f64 / MS_PER_HOUR
    }
    fn fixed3(&self, v: impl std::borrow::Borrow<f64>) -> String {
        haneul_api::fixed3(*v.borrow())
    }
}

async fn statements_page(ctx: Ctx, Query(q): Query<StatementQuery>) -> Response {
    let q = q.or_month_of(ctx.state.clock.now_ms());
    finish(&ctx, statements_body(&ctx, q).await)
}

async fn statements_body(ctx: &Ctx, q: StatementQuery) -> Result<Response, Refusal> {
    let user: api::User = ctx.get("/v1/whoami").await?;
    let projects: Vec<api::Project> = ctx.get("/v1/projects").await?;
    let answer = match q.api_uri() {
        Ok(uri) => ctx.get::<api::Statement>(&uri).await,
        Err((field, message)) => Err(Refusal::Bad { field, message }),
    };
    let (statement, error) = match answer {
        Ok(s) => (Some(s), None),
        Err(Refusal::Bad { field, message }) => (None, Some((field, message))),
        Err(r) => return Err(r),
    };
    let names = project_names(&projects);
    let orgs: Vec<api::Org> = ctx.get("/v1/orgs").await?;
    let org_names: BTreeMap<i64, String> = orgs.into_iter().map(|o| (o.id, o.name)).collect();
    let lines = statement
        .iter()
        .flat_map(|s| s.lines.iter())
        .map(|l| LineRow {
            project: name_of(&names, l.project),
            org: name_of(&org_names, l.org),
            line: l.clone(),
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = StatementsPage {
        base: ctx.base(&user),
        projects,
        project: q.project.trim().to_string(),
        month: q.month(),
        csv_href: q.csv_href(),
        error,
        statement,
        lines,
    };
    Ok((status, render(&page)).into_response())
}

/// The same statement as CSV, in the API's columns (`accounting::statement_csv`), as a
/// download named by its month and project.
async fn statement_csv(ctx: Ctx, Query(q): Query<StatementQuery>) -> Response {
    let q = q.or_month_of(ctx.state.clock.now_ms());
    let result = async {
        let uri = q
            .api_uri()
            .map_err(|(field, message)| Refusal::Bad { field, message })?;
        let s: api::Statement = ctx.get(&uri).await?;
        let project = q.project.trim();
        let filename = if project.is_empty() {
            format!("haneul-statement-{}.csv", s.month)
        } else {
            format!("haneul-statement-{}-project-{project}.csv", s.month)
        };
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{filename}\""),
                ),
            ],
            crate::accounting::statement_csv(&s),
        )
            .into_response())
    };
    finish(&ctx, result.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_form_names_the_bad_field_as_the_api_does() {
        let f = CallForm {
            capacity_gpus: "lots".into(),
            ..CallForm::default()
        };
        assert_eq!(f.body().unwrap_err().0, "capacity_gpus");
        let f = CallForm {
            capacity_gpus: "16".into(),
            t1_name: "small".into(),
            t1_max: "4".into(),
            t1_days: "30".into(),
            t2_name: "big".into(),
            t2_max: "eight".into(),
            ..CallForm::default()
        };
        assert_eq!(f.body().unwrap_err().0, "tracks[1].max_gpus");
        // A second track with no name is left out; the first is always sent.
        let f = CallForm {
            capacity_gpus: "16".into(),
            t1_max: "4".into(),
            t1_days: "30".into(),
            t1_cap: "2".into(),
            ..CallForm::default()
        };
        let b = f.body().unwrap();
        assert_eq!(b["tracks"].as_array().unwrap().len(), 1);
        assert_eq!(b["tracks"][0]["per_org_cap_gpus"], 2);
        assert_eq!(b["tracks"][0]["min_gpus"], 1);
        assert!(b["tracks"][0].get("region").is_none());
    }

    #[test]
    fn statement_query_defaults_to_this_month_and_refuses_what_is_not_one() {
        // 2026-12-31T23:59:59.999Z
        let q = StatementQuery::default().or_month_of(1_798_761_599_999);
        assert_eq!(q.month(), "2026-12");
        assert!(q.api_uri().unwrap().ends_with("month=2026-12"));
        let asked = StatementQuery {
            month: "2025-03".into(),
            ..StatementQuery::default()
        };
        assert_eq!(asked.or_month_of(1_798_761_599_999).month(), "2025-03");
        let q = StatementQuery {
            month: "2026-12&org=1".into(),
            ..StatementQuery::default()
        };
        assert_eq!(q.api_uri().unwrap_err().0, "month");
        let q = StatementQuery {
            project: "x".into(),
            month: "2026-12".into(),
        };
        assert_eq!(q.api_uri().unwrap_err().0, "project");
    }
}
