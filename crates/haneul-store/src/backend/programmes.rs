//! Programmes: calls for proposals, the applications filed to them, reviewers' scores, and the
//! awarding of a call, which makes its awards in one transaction. Owns the `calls`,
//! `applications` and `scores` tables.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// Calls, applications, scores and the awarding of a call. Part of [`crate::Store`].
#[async_trait]
pub trait ProgrammeStore: Send + Sync {
    async fn create_call(&self, actor: &Actor, c: NewCall, now: i64) -> Result<CallRecord>;
    async fn get_call(&self, id: i64) -> Result<CallRecord>;
    async fn list_calls(&self) -> Result<Vec<CallRecord>>;
    /// Opens or closes a call for applications.
    async fn set_call_state(
        &self,
        actor: &Actor,
        id: i64,
        state: CallState,
        now: i64,
    ) -> Result<CallRecord>;
    /// Files an application to an open call.
    async fn create_application(
        &self,
        actor: &Actor,
        a: NewApplication,
        now: i64,
    ) -> Result<ApplicationRecord>;
    async fn get_application(&self, id: i64) -> Result<ApplicationRecord>;
    async fn list_applications(&self, call: i64) -> Result<Vec<ApplicationRecord>>;
    /// Records (or replaces) one reviewer's score of a submitted application.
    async fn score_application(
        &self,
        actor: &Actor,
        application: i64,
        reviewer: &str,
        score: i64,
        comment: &str,
        now: i64,
    ) -> Result<ApplicationRecord>;
    /// Makes a call's awards and declines in one transaction, and marks the call awarded.
    async fn award_call(
        &self,
        actor: &Actor,
        call: i64,
        decisions: Vec<CallDecision>,
        now: i64,
    ) -> Result<Vec<AwardRecord>>;
}

/// Expands [`ProgrammeStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! programme_store {
    ($store:ty, $db:ty) => {
        fn call_row(r: &DbRow) -> Result<CallRecord> {
            let model: String = r.try_get("gpu_model")?;
            let state: String = r.try_get("state")?;
            Ok(CallRecord {
                id: r.try_get("id")?,
                programme: r.try_get("programme")?,
                name: r.try_get("name")?,
                gpu_model: GpuModel::new(&model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                capacity_gpus: r.try_get("capacity_gpus")?,
                tracks: r.try_get("tracks")?,
                state: parse_enum(&state, CallState::parse, "call state")?,
                created_at: r.try_get("created_at")?,
            })
        }

        async fn application_in(tx: &mut Tx<'_>, id: i64) -> Result<ApplicationRecord> {
            let r = sqlx::query("SELECT * FROM applications WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("application", id))?;
            let state: String = r.try_get("state")?;
            let scores = sqlx::query_as::<_, (String, i64, String)>(
                "SELECT reviewer, score, comment FROM scores WHERE application_id = $1 \
                 ORDER BY reviewer",
            )
            .bind(id)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(|(reviewer, score, comment)| ScoreRecord {
                reviewer,
                score,
                comment,
            })
            .collect();
            Ok(ApplicationRecord {
                id: r.try_get("id")?,
                call_id: r.try_get("call_id")?,
                project_id: r.try_get("project_id")?,
                track: r.try_get("track")?,
                gpus: r.try_get("gpus")?,
                days: r.try_get("days")?,
                region: r.try_get("region")?,
                plan: r.try_get("plan")?,
                state: parse_enum(&state, ApplicationState::parse, "application state")?,
                created_at: r.try_get("created_at")?,
                scores,
            })
        }

        async fn call_in(tx: &mut Tx<'_>, id: i64) -> Result<CallRecord> {
            let r = sqlx::query("SELECT * FROM calls WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("call", id))?;
            call_row(&r)
        }

        #[async_trait]
        impl ProgrammeStore for $store {
            async fn create_call(&self, actor: &Actor, c: NewCall, now: i64) -> Result<CallRecord> {
                if c.capacity_gpus <= 0 {
                    return Err(StoreError::invalid("capacity_gpus", "must be positive"));
                }
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO calls (programme, name, gpu_model, capacity_gpus, tracks, state, \
                     created_at) VALUES ($1, $2, $3, $4, $5, 'open', $6) RETURNING *",
                )
                .bind(&c.programme)
                .bind(&c.name)
                .bind(c.gpu_model.as_str())
                .bind(c.capacity_gpus)
                .bind(&c.tracks)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("call `{}`", c.name)))?;
                let rec = call_row(&row)?;
                let detail = serde_json::json!({
                    "programme": c.programme,
                    "name": c.name,
                    "gpu_model": c.gpu_model,
                    "capacity_gpus": c.capacity_gpus,
                    // Tracks are stored as JSON text; kept as JSON in the entry, not quoted.
                    "tracks": serde_json::from_str::<serde_json::Value>(&c.tracks)
                        .unwrap_or_else(|_| c.tracks.clone().into()),
                })
                .to_string();
                audit(&mut tx, actor, "call.create", &format!("call/{}", rec.id), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_call(&self, id: i64) -> Result<CallRecord> {
                let mut tx = self.begin_read().await?;
                call_in(&mut tx, id).await
            }

            async fn list_calls(&self) -> Result<Vec<CallRecord>> {
                let rows = sqlx::query("SELECT * FROM calls ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(call_row).collect()
            }

            async fn set_call_state(
                &self,
                actor: &Actor,
                id: i64,
                state: CallState,
                now: i64,
            ) -> Result<CallRecord> {
                if state == CallState::Awarded {
                    return Err(StoreError::invalid("state", "a call is awarded by making its awards"));
                }
                let mut tx = self.begin_write().await?;
                let call = call_in(&mut tx, id).await?;
                if call.state == CallState::Awarded {
                    return Err(StoreError::conflict("state", format!("call `{}` has been awarded", call.name)));
                }
                sqlx::query("UPDATE calls SET state = $1 WHERE id = $2")
                    .bind(state.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                audit(&mut tx, actor, &format!("call.{state}"), &format!("call/{id}"), "{}", now).await?;
                let rec = call_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn create_application(
                &self,
                actor: &Actor,
                a: NewApplication,
                now: i64,
            ) -> Result<ApplicationRecord> {
                let mut tx = self.begin_write().await?;
                let call = call_in(&mut tx, a.call_id).await?;
                if call.state != CallState::Open {
                    return Err(StoreError::conflict(
                        "call",
                        format!("call `{}` is {} and takes no applications", call.name, call.state),
                    ));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO applications (call_id, project_id, track, gpus, days, region, plan, \
                     state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'submitted', $8) \
                     RETURNING id",
                )
                .bind(a.call_id)
                .bind(a.project_id)
                .bind(&a.track)
                .bind(a.gpus)
                .bind(a.days)
                .bind(&a.region)
                .bind(&a.plan)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "project", format!("an application of project {} to this call", a.project_id)))?;
                let detail = serde_json::json!({
                    "call": a.call_id,
                    "project": a.project_id,
                    "track": a.track,
                    "gpus": a.gpus,
                    "days": a.days,
                })
                .to_string();
                audit(&mut tx, actor, "application.create", &format!("application/{id}"), &detail, now)
                    .await?;
                let rec = application_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_application(&self, id: i64) -> Result<ApplicationRecord> {
                let mut tx = self.begin_read().await?;
                application_in(&mut tx, id).await
            }

            async fn list_applications(&self, call: i64) -> Result<Vec<ApplicationRecord>> {
                let mut tx = self.begin_read().await?;
                let ids: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM applications WHERE call_id = $1 ORDER BY id")
                        .bind(call)
                        .fetch_all(&mut *tx)
                        .await?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(application_in(&mut tx, id).await?);
                }
                Ok(out)
            }

            async fn score_application(
                &self,
                actor: &Actor,
                application: i64,
                reviewer: &str,
                score: i64,
                comment: &str,
                now: i64,
            ) -> Result<ApplicationRecord> {
                let mut tx = self.begin_write().await?;
                let app = application_in(&mut tx, application).await?;
                if app.state != ApplicationState::Submitted {
                    return Err(StoreError::conflict(
                        "application",
                        format!("application {application} has been decided ({})", app.state),
                    ));
                }
                sqlx::query(
                    "INSERT INTO scores (application_id, reviewer, score, comment, at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application_id, reviewer) \
                     DO UPDATE SET score = excluded.score, comment = excluded.comment, at = excluded.at",
                )
                .bind(application)
                .bind(reviewer)
                .bind(score)
                .bind(comment)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let detail = serde_json::json!({"reviewer": reviewer, "score": score}).to_string();
                audit(&mut tx, actor, "application.score", &format!("application/{application}"), &detail, now)
                    .await?;
                let rec = application_in(&mut tx, application).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn award_call(
                &self,
                actor: &Actor,
                call: i64,
                decisions: Vec<CallDecision>,
                now: i64,
            ) -> Result<Vec<AwardRecord>> {
                let mut tx = self.begin_write().await?;
                let c = call_in(&mut tx, call).await?;
                if c.state == CallState::Awarded {
                    return Err(StoreError::conflict("call", format!("call `{}` has already been awarded", c.name)));
                }
                let mut awards = Vec::new();
                for d in decisions {
                    let (app, state, detail) = match &d {
                        CallDecision::Award(a) => {
                            let rec = insert_award(&mut tx, actor, a, now).await?;
                            let detail = serde_json::json!({"award": rec.id}).to_string();
                            awards.push(rec);
                            (a.application_id.unwrap_or(0), ApplicationState::Awarded, detail)
                        }
                        CallDecision::Decline { application_id, reason } => (
                            *application_id,
                            ApplicationState::Declined,
                            serde_json::json!({"reason": reason}).to_string(),
                        ),
                    };
                    let done = sqlx::query(
                        "UPDATE applications SET state = $1 WHERE id = $2 AND call_id = $3 \
                         AND state = 'submitted'",
                    )
                    .bind(state.as_str())
                    .bind(app)
                    .bind(call)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::conflict(
                            "application",
                            format!("application {app} is not a submitted application of this call"),
                        ));
                    }
                    let action = match state {
                        ApplicationState::Awarded => "application.award",
                        _ => "application.decline",
                    };
                    audit(&mut tx, actor, action, &format!("application/{app}"), &detail, now).await?;
                }
                sqlx::query("UPDATE calls SET state = 'awarded' WHERE id = $1")
                    .bind(call)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    actor,
                    "call.award",
                    &format!("call/{call}"),
                    &serde_json::json!({"awards": awards.len()}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(awards)
            }
        }
    };
}

pub(crate) use programme_store;
