//! Programmes: calls with tracks, applications, reviewer scores, and awards made from the
//! ranked applications within a call's capacity ([`rank`], pure and deterministic), with their
//! routes.

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, Body, OptionalBody};
use crate::extract::Id;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haneul_api::*;
use haneul_model::GpuModel;
use haneul_store as st;
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const MS_PER_DAY: i64 = 86_400_000;

/// Highest reviewer score.
pub const MAX_SCORE: i64 = 10;

/// One application as the ranking sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub application: st::ApplicationRecord,
    pub org: i64,
}

/// Orders a call's applications and decides each: mean score (highest first), then whether the
/// application is from its track's preferred region, then the earlier application. In that
/// order each is awarded while the call's capacity and its organisation's cap in the track
/// allow; one that does not fit is declined and smaller ones after it may still fit.
/// Unscored applications are declined. The same inputs always give the same decisions.
pub fn rank(
    call: &st::CallRecord,
    tracks: &[Track],
    candidates: &[Candidate],
    now: i64,
) -> Vec<st::CallDecision> {
    let track = |name: &str| tracks.iter().find(|t| t.name == name);
    let mut decisions = Vec::new();
    let mut scored: Vec<&Candidate> = Vec::new();
    for c in candidates {
        if c.application.state != st::ApplicationState::Submitted {
            continue;
        }
        if c.application.scores.is_empty() {
            decisions.push(st::CallDecision::Decline {
                application_id: c.application.id,
                reason: "no reviewer scored it".into(),
            });
        } else {
            scored.push(c);
        }
    }
    let mean = |c: &Candidate| -> (i64, i64) {
        let s = &c.application.scores;
        (s.iter().map(|r| r.score).sum(), s.len() as i64)
    };
    let preferred = |c: &Candidate| {
        track(&c.application.track)
            .and_then(|t| t.region.as_deref())
            .is_some_and(|r| r == c.application.region)
    };
    scored.sort_by(|a, b| {
        let ((sa, na), (sb, nb)) = (mean(a), mean(b));
        // Compare the means exactly: sa/na against sb/nb.
        (sb * na)
            .cmp(&(sa * nb))
            .then_with(|| preferred(b).cmp(&preferred(a)))
            .then_with(|| a.application.id.cmp(&b.application.id))
    });
    let mut left = call.capacity_gpus;
    let mut per_org: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for c in scored {
        let a = &c.application;
        let cap = track(&a.track).and_then(|t| t.per_org_cap_gpus);
        let held = per_org.get(&(a.track.clone(), c.org)).copied().unwrap_or(0);
        let decline = if a.gpus > left {
            Some(format!(
                "the call's capacity is used up ({left} of {} GPUs left)",
                call.capacity_gpus
            ))
        } else if cap.is_some_and(|cap| held + a.gpus > cap) {
            Some(format!(
                "the organisation's cap of {} GPUs in track `{}` is reached",
                cap.unwrap_or(0),
                a.track
            ))
        } else {
            None
        };
        if let Some(reason) = decline {
            decisions.push(st::CallDecision::Decline {
                application_id: a.id,
                reason,
            });
            continue;
        }
        left -= a.gpus;
        *per_org.entry((a.track.clone(), c.org)).or_default() += a.gpus;
        decisions.push(st::CallDecision::Award(st::NewAward {
            project_id: a.project_id,
            gpu_model: call.gpu_model.clone(),
            gpu_hours: a.gpus * a.days * 24,
            valid_from: now,
            valid_until: now + a.days * MS_PER_DAY,
            gpu_quota: a.gpus,
            application_id: Some(a.id),
        }));
    }
    decisions
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_call, list_calls))
        .routes(routes!(get_call))
        .routes(routes!(set_call_state))
        .routes(routes!(apply, list_applications))
        .routes(routes!(score))
        .routes(routes!(award_call))
}

fn actor(c: &Caller) -> st::Actor {
    st::Actor::user(&c.0)
}

fn call_to_api(c: st::CallRecord) -> Result<Call, ApiError> {
    let tracks: Vec<Track> = serde_json::from_str(&c.tracks)
        .map_err(|e| ApiError::Internal(format!("call {} tracks: {e}", c.id)))?;
    Ok(Call {
        id: c.id,
        programme: c.programme,
        name: c.name,
        gpu_model: c.gpu_model.to_string(),
        capacity_gpus: c.capacity_gpus,
        tracks,
        state: c.state.to_string(),
        created_at: c.created_at,
    })
}

fn application_to_api(a: st::ApplicationRecord) -> Application {
    let mean_score = (!a.scores.is_empty())
        .then(|| a.scores.iter().map(|r| r.score as f64).sum::<f64>() / a.scores.len() as f64);
    Application {
        id: a.id,
        call: a.call_id,
        project: a.project_id,
        track: a.track,
        gpus: a.gpus,
        days: a.days,
        region: a.region,
        plan: a.plan,
        state: a.state.to_string(),
        scores: a
            .scores
            .into_iter()
            .map(|r| Score {
                reviewer: r.reviewer,
                score: r.score,
                comment: r.comment,
            })
            .collect(),
        mean_score,
        created_at: a.created_at,
    }
}

fn check_tracks(tracks: &[Track]) -> Result<(), ApiError> {
    if tracks.is_empty() {
        return Err(ApiError::bad("tracks", "a call needs at least one track"));
    }
    for (i, t) in tracks.iter().enumerate() {
        let f = |name: &str| format!("tracks[{i}].{name}");
        crate::validate::name(&f("name"), &t.name, 128)?;
        if let Some(r) = &t.region {
            crate::validate::name(&f("region"), r, 128)?;
        }
        if t.name.is_empty() || tracks[..i].iter().any(|o| o.name == t.name) {
            return Err(ApiError::bad(f("name"), "must be non-empty and unique"));
        }
        if t.min_gpus < 1 || t.max_gpus < t.min_gpus {
            return Err(ApiError::bad(
                f("max_gpus"),
                "need 1 <= min_gpus <= max_gpus",
            ));
        }
        if t.whole_server && (t.server_gpus < 1 || t.max_gpus < t.server_gpus) {
            return Err(ApiError::bad(
                f("server_gpus"),
                "a whole-server track needs max_gpus of at least one server",
            ));
        }
        if t.max_days < 1 {
            return Err(ApiError::bad(f("max_days"), "must be at least 1"));
        }
        if t.per_org_cap_gpus.is_some_and(|c| c < 1) {
            return Err(ApiError::bad(f("per_org_cap_gpus"), "must be at least 1"));
        }
    }
    Ok(())
}

/// Open a call (centre admin).
#[utoipa::path(post, path = "/v1/calls", tag = "awards", request_body = CallCreate,
    responses((status = 201, body = Call), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_call(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<CallCreate>,
) -> Result<(StatusCode, Json<Call>), ApiError> {
    caller.admin()?;
    crate::validate::optional_name("programme", &b.programme, 128)?;
    crate::validate::optional_name("name", &b.name, 128)?;
    if b.name.is_empty() || b.programme.is_empty() {
        return Err(ApiError::bad(
            if b.name.is_empty() {
                "name"
            } else {
                "programme"
            },
            "must not be empty",
        ));
    }
    let model = GpuModel::new(&b.gpu_model)?;
    check_tracks(&b.tracks)?;
    let tracks = serde_json::to_string(&b.tracks).map_err(|e| ApiError::Internal(e.to_string()))?;
    let c = s
        .store
        .create_call(
            &actor(&caller),
            st::NewCall {
                programme: b.programme,
                name: b.name,
                gpu_model: model,
                capacity_gpus: b.capacity_gpus,
                tracks,
            },
            s.clock.now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(call_to_api(c)?)))
}

/// Every call.
#[utoipa::path(get, path = "/v1/calls", tag = "awards",
    responses((status = 200, body = Vec<Call>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_calls(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Call>>, ApiError> {
    caller.person()?;
    let calls = s.store.list_calls().await?;
    Ok(Json(
        calls
            .into_iter()
            .map(call_to_api)
            .collect::<Result<_, _>>()?,
    ))
}

#[utoipa::path(get, path = "/v1/calls/{id}", tag = "awards",
    params(("id" = i64, Path, description = "call id", minimum = 1)),
    responses((status = 200, body = Call), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_call(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Call>, ApiError> {
    caller.person()?;
    Ok(Json(call_to_api(s.store.get_call(id).await?)?))
}

/// Close a call to applications, or open it again (centre admin).
#[utoipa::path(post, path = "/v1/calls/{id}/state", tag = "awards", request_body = CallStateChange,
    params(("id" = i64, Path, description = "call id", minimum = 1)),
    responses((status = 200, body = Call), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn set_call_state(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<CallStateChange>,
) -> Result<Json<Call>, ApiError> {
    caller.admin()?;
    let state = match b.state.as_str() {
        "open" => st::CallState::Open,
        "closed" => st::CallState::Closed,
        _ => return Err(ApiError::bad("state", "use open or closed")),
    };
    let reason = crate::validate::reason(b.reason.as_deref())?;
    let c = s
        .store
        .set_call_state(&actor(&caller).because(reason), id, state, s.clock.now_ms())
        .await?;
    Ok(Json(call_to_api(c)?))
}

/// Apply to an open call for a project (its organisation's admin, or a centre admin).
#[utoipa::path(post, path = "/v1/calls/{id}/applications", tag = "awards",
    request_body = ApplicationCreate,
    params(("id" = i64, Path, description = "call id", minimum = 1)),
    responses((status = 201, body = Application), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn apply(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<ApplicationCreate>,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    caller.person()?;
    let project = match s.store.get_project(b.project).await {
        Ok(p) if caller.can_see_project(&p) => p,
        Ok(_) | Err(st::StoreError::NotFound { .. }) => {
            return Err(ApiError::bad(
                "project",
                format!("no project {}", b.project),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if !caller.can_manage_org(project.org_id) {
        return Err(ApiError::forbidden(
            "only the organisation's admin or a centre admin applies for its projects",
        ));
    }
    let call = s.store.get_call(id).await?;
    let tracks: Vec<Track> = serde_json::from_str(&call.tracks)
        .map_err(|e| ApiError::Internal(format!("call {id} tracks: {e}")))?;
    let names: Vec<&str> = tracks.iter().map(|t| t.name.as_str()).collect();
    let track = tracks.iter().find(|t| t.name == b.track).ok_or_else(|| {
        ApiError::bad(
            "track",
            format!("call `{}` has the tracks {}", call.name, names.join(", ")),
        )
    })?;
    if b.gpus < track.min_gpus || b.gpus > track.max_gpus {
        return Err(ApiError::bad(
            "gpus",
            format!(
                "track `{}` takes {} to {} GPUs",
                track.name, track.min_gpus, track.max_gpus
            ),
        ));
    }
    if track.whole_server && b.gpus % track.server_gpus != 0 {
        return Err(ApiError::bad(
            "gpus",
            format!(
                "track `{}` awards whole servers: ask for a multiple of {} GPUs",
                track.name, track.server_gpus
            ),
        ));
    }
    if b.days < 1 || b.days > track.max_days {
        return Err(ApiError::bad(
            "days",
            format!("track `{}` awards 1 to {} days", track.name, track.max_days),
        ));
    }
    crate::validate::text("plan", &b.plan, 20_000)?;
    if b.plan.trim().is_empty() {
        return Err(ApiError::bad("plan", "describe the work the GPUs are for"));
    }
    let region = match b.region {
        Some(r) => r,
        None => s.store.get_org(project.org_id).await?.country,
    };
    let a = s
        .store
        .create_application(
            &actor(&caller),
            st::NewApplication {
                call_id: id,
                project_id: project.id,
                track: b.track,
                gpus: b.gpus,
                days: b.days,
                region,
                plan: b.plan,
            },
            s.clock.now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(application_to_api(a))))
}

/// A call's applications the caller may see (all of them for centre admins and auditors).
#[utoipa::path(get, path = "/v1/calls/{id}/applications", tag = "awards",
    params(("id" = i64, Path, description = "call id", minimum = 1)),
    responses((status = 200, body = Vec<Application>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_applications(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Vec<Application>>, ApiError> {
    caller.person()?;
    s.store.get_call(id).await?;
    let visible: Vec<i64> = s
        .store
        .list_projects()
        .await?
        .into_iter()
        .filter(|p| caller.can_see_project(p))
        .map(|p| p.id)
        .collect();
    Ok(Json(
        s.store
            .list_applications(id)
            .await?
            .into_iter()
            .filter(|a| visible.contains(&a.project_id))
            .map(application_to_api)
            .map(|mut a| {
                // Review is blind to the applicant: who scored what, and what they wrote,
                // stays with the centre's staff; the mean is the applicant's to know.
                if !caller.sees_all() {
                    a.scores.clear();
                }
                a
            })
            .collect(),
    ))
}

/// Score an application (centre admin, on behalf of a reviewer).
#[utoipa::path(post, path = "/v1/applications/{id}/scores", tag = "awards",
    request_body = ScoreCreate,
    params(("id" = i64, Path, description = "application id", minimum = 1)),
    responses((status = 201, body = Application), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn score(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<ScoreCreate>,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    caller.admin()?;
    if !(0..=MAX_SCORE).contains(&b.score) {
        return Err(ApiError::bad("score", format!("must be 0 to {MAX_SCORE}")));
    }
    let reviewer = b.reviewer.unwrap_or_else(|| caller.0.name.clone());
    if reviewer.is_empty() {
        return Err(ApiError::bad("reviewer", "must not be empty"));
    }
    crate::validate::name("reviewer", &reviewer, 128)?;
    crate::validate::text("comment", &b.comment, 4096)?;
    let a = s
        .store
        .score_application(
            &actor(&caller),
            id,
            &reviewer,
            b.score,
            &b.comment,
            s.clock.now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(application_to_api(a))))
}

/// Rank a call's applications and make its awards within its capacity (centre admin). The
/// call takes no more applications afterwards.
#[utoipa::path(post, path = "/v1/calls/{id}/award", tag = "awards",
    request_body(content = Option<ActionReason>, description = "why, for the audit log (optional)"),
    params(("id" = i64, Path, description = "call id", minimum = 1)),
    responses((status = 201, body = CallAwarded), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn award_call(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    OptionalBody(why): OptionalBody<ActionReason>,
) -> Result<(StatusCode, Json<CallAwarded>), ApiError> {
    caller.admin()?;
    let reason = crate::validate::reason(why.reason.as_deref())?;
    let call = s.store.get_call(id).await?;
    let tracks: Vec<Track> = serde_json::from_str(&call.tracks)
        .map_err(|e| ApiError::Internal(format!("call {id} tracks: {e}")))?;
    let orgs: BTreeMap<i64, i64> = s
        .store
        .list_projects()
        .await?
        .into_iter()
        .map(|p| (p.id, p.org_id))
        .collect();
    let candidates: Vec<Candidate> = s
        .store
        .list_applications(id)
        .await?
        .into_iter()
        .map(|a| Candidate {
            org: orgs.get(&a.project_id).copied().unwrap_or(0),
            application: a,
        })
        .collect();
    let now = s.clock.now_ms();
    let decisions = rank(&call, &tracks, &candidates, now);
    let declined = decisions
        .iter()
        .filter_map(|d| match d {
            st::CallDecision::Decline {
                application_id,
                reason,
            } => Some(Declined {
                application: *application_id,
                reason: reason.clone(),
            }),
            st::CallDecision::Award(_) => None,
        })
        .collect();
    let awards = s
        .store
        .award_call(&actor(&caller).because(reason), id, decisions, now)
        .await?;
    s.signals.wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(CallAwarded {
            awards: awards.into_iter().map(convert::award).collect(),
            declined,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(capacity: i64) -> st::CallRecord {
        st::CallRecord {
            id: 1,
            programme: "p".into(),
            name: "c".into(),
            gpu_model: GpuModel::new("H200").unwrap(),
            capacity_gpus: capacity,
            tracks: String::new(),
            state: st::CallState::Closed,
            created_at: 0,
        }
    }

    fn app(id: i64, org: i64, gpus: i64, region: &str, scores: &[i64]) -> Candidate {
        Candidate {
            org,
            application: st::ApplicationRecord {
                id,
                call_id: 1,
                project_id: 100 + id,
                track: "t".into(),
                gpus,
                days: 10,
                region: region.into(),
                plan: "x".into(),
                state: st::ApplicationState::Submitted,
                created_at: id,
                scores: scores
                    .iter()
                    .enumerate()
                    .map(|(i, s)| st::ScoreRecord {
                        reviewer: format!("r{i}"),
                        score: *s,
                        comment: String::new(),
                    })
                    .collect(),
            },
        }
    }

    fn track(cap: Option<i64>) -> Vec<Track> {
        vec![Track {
            name: "t".into(),
            min_gpus: 1,
            max_gpus: 8,
            whole_server: false,
            server_gpus: 8,
            max_days: 90,
            per_org_cap_gpus: cap,
            region: Some("KR".into()),
        }]
    }

    fn outcome(d: &[st::CallDecision]) -> Vec<(i64, bool)> {
        d.iter()
            .map(|d| match d {
                st::CallDecision::Award(a) => (a.application_id.unwrap(), true),
                st::CallDecision::Decline { application_id, .. } => (*application_id, false),
            })
            .collect()
    }

    #[test]
    fn ranks_by_score_region_then_age_within_capacity() {
        let apps = vec![
            app(1, 1, 4, "EU", &[8, 8]),
            app(2, 2, 4, "KR", &[9, 7]), // same mean as 1, preferred region: first
            app(3, 3, 4, "KR", &[9]),
            app(4, 4, 2, "KR", &[5]),
            app(5, 5, 1, "KR", &[]),
        ];
        let d = rank(&call(10), &track(None), &apps, 1000);
        // 3 (9.0), 2 (8.0, KR), 1 (8.0) does not fit in the 2 left, 4 (2 GPUs) does.
        assert_eq!(
            outcome(&d),
            vec![(5, false), (3, true), (2, true), (1, false), (4, true)]
        );
        let st::CallDecision::Award(a) = &d[1] else {
            panic!()
        };
        assert_eq!((a.gpu_hours, a.gpu_quota), (4 * 10 * 24, 4));
        assert_eq!(a.valid_until - a.valid_from, 10 * MS_PER_DAY);
        // Deterministic whatever the input order.
        let mut rev = apps.clone();
        rev.reverse();
        assert_eq!(rank(&call(10), &track(None), &rev, 1000), d);
    }

    #[test]
    fn per_org_cap() {
        let apps = vec![app(1, 7, 4, "KR", &[9]), app(2, 7, 4, "KR", &[8])];
        let d = rank(&call(16), &track(Some(6)), &apps, 0);
        assert_eq!(outcome(&d), vec![(1, true), (2, false)]);
        let st::CallDecision::Decline { reason, .. } = &d[1] else {
            panic!()
        };
        assert!(reason.contains("cap of 6"), "{reason}");
    }
}
