//! Tenants: organisations (with their verification), projects (weights, quotas, Unix gids),
//! users (roles, memberships, Unix uids and gids) and the denied-party list that screens them.
//! Owns the `orgs`, `projects`, `project_members`, `users` and `denied_parties` tables; the uid of
//! each node's agent is kept by [`super::nodes`] but read here, since no user may be given it.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;
use haneul_model::{GpuModel, Quota};
use std::collections::BTreeMap;

/// Organisations, projects and users, and the compliance records about them. Part of [`crate::Store`].
#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_org(&self, actor: &Actor, org: NewOrg, now: i64) -> Result<OrgRecord>;
    async fn get_org(&self, id: i64) -> Result<OrgRecord>;
    async fn list_orgs(&self) -> Result<Vec<OrgRecord>>;
    async fn create_project(&self, actor: &Actor, p: NewProject, now: i64)
    -> Result<ProjectRecord>;
    /// Replaces a project's quotas; the controller applies them in place.
    async fn set_project_quotas(
        &self,
        actor: &Actor,
        id: i64,
        quotas: BTreeMap<GpuModel, Quota>,
        now: i64,
    ) -> Result<ProjectRecord>;
    async fn get_project(&self, id: i64) -> Result<ProjectRecord>;
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;
    async fn create_user(&self, actor: &Actor, u: NewUser, now: i64) -> Result<UserRecord>;
    async fn get_user(&self, id: i64) -> Result<UserRecord>;
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    /// Sets a user's Unix uid and/or primary gid (`None` keeps the current one); a uid
    /// another user has is a conflict naming `uid`.
    async fn update_user_ids(
        &self,
        actor: &Actor,
        id: i64,
        uid: Option<i64>,
        gid: Option<i64>,
        now: i64,
    ) -> Result<UserRecord>;
    /// Every uid an agent runs as: no user may be given one of them.
    async fn agent_uids(&self) -> Result<Vec<i64>>;
    /// Sets an organisation's verification; its projects' standing changes with it.
    async fn set_org_verification(
        &self,
        actor: &Actor,
        org: i64,
        status: Verification,
        now: i64,
    ) -> Result<OrgRecord>;
    /// Adds (or replaces, by name) denied parties. Returns how many rows were written.
    async fn import_denied_parties(
        &self,
        actor: &Actor,
        parties: Vec<DeniedParty>,
        now: i64,
    ) -> Result<i64>;
    async fn list_denied_parties(&self) -> Result<Vec<DeniedParty>>;
}

/// Expands [`TenantStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! tenant_store {
    ($store:ty, $db:ty) => {
        fn org_row(r: &DbRow) -> Result<OrgRecord> {
            Ok(OrgRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                class: r.try_get("class")?,
                country: r.try_get("country")?,
                parent: r.try_get("parent")?,
                parent_country: r.try_get("parent_country")?,
                verification: parse_enum(
                    &r.try_get::<String, _>("verification")?,
                    Verification::parse,
                    "verification",
                )?,
                created_at: r.try_get("created_at")?,
            })
        }

        fn project_row(r: &DbRow) -> Result<ProjectRecord> {
            let quotas: String = r.try_get("quotas")?;
            Ok(ProjectRecord {
                id: r.try_get("id")?,
                org_id: r.try_get("org_id")?,
                name: r.try_get("name")?,
                weight: r.try_get("weight")?,
                quotas: serde_json::from_str(&quotas)?,
                created_at: r.try_get("created_at")?,
                gid: r.try_get("gid")?,
            })
        }

        fn user_row(r: &DbRow, projects: Vec<i64>) -> Result<UserRecord> {
            let role: String = r.try_get("role")?;
            Ok(UserRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: parse_enum(&role, Role::parse, "role")?,
                org_id: r.try_get("org_id")?,
                projects,
                created_at: r.try_get("created_at")?,
                uid: r.try_get("uid")?,
                gid: r.try_get("gid")?,
            })
        }

        /// The next id of `range` for `column` of `table`: one above the highest allocated in
        /// the range (ids freed below it are not reused, so a deleted account's files are never
        /// handed to a newcomer).
        async fn next_id(
            tx: &mut Tx<'_>,
            table: &'static str,
            column: &'static str,
            range: IdRange,
        ) -> Result<i64> {
            let max: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT MAX({column}) FROM {table} WHERE {column} BETWEEN $1 AND $2"
            ))
            .bind(range.first)
            .bind(range.last)
            .fetch_one(&mut **tx)
            .await?;
            let next = max.map_or(range.first, |m| m + 1);
            if next > range.last {
                return Err(StoreError::invalid(
                    column,
                    format!(
                        "the range {}-{} is used up; widen it in the server's configuration",
                        range.first, range.last
                    ),
                ));
            }
            Ok(next)
        }

        async fn user_projects(tx: &mut Tx<'_>, user: i64) -> Result<Vec<i64>> {
            Ok(sqlx::query_scalar(
                "SELECT project_id FROM project_members WHERE user_id = $1 ORDER BY project_id",
            )
            .bind(user)
            .fetch_all(&mut **tx)
            .await?)
        }

        #[async_trait]
        impl TenantStore for $store {
            async fn create_org(&self, actor: &Actor, org: NewOrg, now: i64) -> Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO orgs (name, class, country, parent, created_at, parent_country, \
                     verification) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(&org.name)
                .bind(&org.class)
                .bind(&org.country)
                .bind(org.parent)
                .bind(now)
                .bind(&org.parent_country)
                .bind(org.verification.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("organisation `{}`", org.name)))?;
                let rec = org_row(&row)?;
                let detail = serde_json::to_string(&org)?;
                audit(&mut tx, actor, "org.create", &format!("org/{}", rec.id), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_org(&self, id: i64) -> Result<OrgRecord> {
                let row = sqlx::query("SELECT * FROM orgs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("organisation", id))?;
                org_row(&row)
            }

            async fn list_orgs(&self) -> Result<Vec<OrgRecord>> {
                let rows = sqlx::query("SELECT * FROM orgs ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(org_row).collect()
            }

            async fn create_project(
                &self,
                actor: &Actor,
                p: NewProject,
                now: i64,
            ) -> Result<ProjectRecord> {
                let mut tx = self.begin_write().await?;
                let gid = next_id(&mut tx, "projects", "gid", p.gid_range).await?;
                let row = sqlx::query(
                    "INSERT INTO projects (org_id, name, weight, quotas, created_at, gid) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                )
                .bind(p.org_id)
                .bind(&p.name)
                .bind(p.weight)
                .bind(serde_json::to_string(&p.quotas)?)
                .bind(now)
                .bind(gid)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("project `{}` in this organisation", p.name)))?;
                let rec = project_row(&row)?;
                let detail = serde_json::to_string(&p)?;
                audit(&mut tx, actor, "project.create", &format!("project/{}", rec.id), &detail, now)
                    .await?;
                event(&mut tx, EventKind::ProjectChanged, None, None, None, &rec.id.to_string(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn set_project_quotas(
                &self,
                actor: &Actor,
                id: i64,
                quotas: BTreeMap<GpuModel, Quota>,
                now: i64,
            ) -> Result<ProjectRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("UPDATE projects SET quotas = $1 WHERE id = $2 RETURNING *")
                    .bind(serde_json::to_string(&quotas)?)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("project", id))?;
                let rec = project_row(&row)?;
                let detail = serde_json::to_string(&quotas)?;
                audit(&mut tx, actor, "project.set_quotas", &format!("project/{id}"), &detail, now)
                    .await?;
                event(&mut tx, EventKind::ProjectChanged, None, None, None, &id.to_string(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_project(&self, id: i64) -> Result<ProjectRecord> {
                let row = sqlx::query("SELECT * FROM projects WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("project", id))?;
                project_row(&row)
            }

            async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
                let rows = sqlx::query("SELECT * FROM projects ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(project_row).collect()
            }

            async fn create_user(&self, actor: &Actor, u: NewUser, now: i64) -> Result<UserRecord> {
                let mut tx = self.begin_write().await?;
                let uid = match u.uid {
                    Some(uid) => uid,
                    None => next_id(&mut tx, "users", "uid", u.uid_range).await?,
                };
                if u.uid.is_some() {
                    let taken: Option<String> =
                        sqlx::query_scalar("SELECT name FROM users WHERE uid = $1")
                            .bind(uid)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(other) = taken {
                        return Err(StoreError::conflict(
                            "uid",
                            format!("uid {uid} already belongs to user `{other}`"),
                        ));
                    }
                }
                let row = sqlx::query(
                    "INSERT INTO users (name, role, org_id, created_at, uid, gid) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                )
                .bind(&u.name)
                .bind(u.role.as_str())
                .bind(u.org_id)
                .bind(now)
                .bind(uid)
                .bind(u.gid.unwrap_or(uid))
                .fetch_one(&mut *tx)
                .await
                // User names are unique across the centre: the answer says the name is taken, and
                // neither echoes it nor says in which organisation.
                .map_err(|e| unique(e, "name", "a user of this name".into()))?;
                let id: i64 = row.try_get("id")?;
                for p in &u.projects {
                    let org: Option<i64> =
                        sqlx::query_scalar("SELECT org_id FROM projects WHERE id = $1")
                            .bind(p)
                            .fetch_optional(&mut *tx)
                            .await?;
                    // Another organisation's project is answered as one that does not exist,
                    // so that a caller learns nothing of other tenants' ids.
                    if org.is_none() || org != u.org_id {
                        return Err(StoreError::not_found("project", p));
                    }
                    sqlx::query("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2)")
                        .bind(p)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                let rec = user_row(&row, user_projects(&mut tx, id).await?)?;
                let detail = serde_json::json!({
                    "name": u.name,
                    "role": u.role.to_string(),
                    "org": u.org_id,
                    "projects": u.projects,
                    "uid": uid,
                    "gid": u.gid.unwrap_or(uid),
                })
                .to_string();
                audit(&mut tx, actor, "user.create", &format!("user/{id}"), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_user(&self, id: i64) -> Result<UserRecord> {
                let mut tx = self.begin_read().await?;
                let row = sqlx::query("SELECT * FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("user", id))?;
                let projects = user_projects(&mut tx, id).await?;
                user_row(&row, projects)
            }

            async fn list_users(&self) -> Result<Vec<UserRecord>> {
                let mut tx = self.begin_read().await?;
                let rows = sqlx::query("SELECT * FROM users ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let id: i64 = r.try_get("id")?;
                    let projects = user_projects(&mut tx, id).await?;
                    out.push(user_row(r, projects)?);
                }
                Ok(out)
            }

            async fn update_user_ids(
                &self,
                actor: &Actor,
                id: i64,
                uid: Option<i64>,
                gid: Option<i64>,
                now: i64,
            ) -> Result<UserRecord> {
                let mut tx = self.begin_write().await?;
                if let Some(uid) = uid {
                    let taken: Option<String> =
                        sqlx::query_scalar("SELECT name FROM users WHERE uid = $1 AND id <> $2")
                            .bind(uid)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(other) = taken {
                        return Err(StoreError::conflict(
                            "uid",
                            format!("uid {uid} already belongs to user `{other}`"),
                        ));
                    }
                }
                let row = sqlx::query(
                    "UPDATE users SET uid = COALESCE($1, uid), gid = COALESCE($2, gid) \
                     WHERE id = $3 RETURNING *",
                )
                .bind(uid)
                .bind(gid)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("user", id))?;
                let rec = user_row(&row, user_projects(&mut tx, id).await?)?;
                let detail = serde_json::json!({"uid": rec.uid, "gid": rec.gid}).to_string();
                audit(&mut tx, actor, "user.update", &format!("user/{id}"), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn agent_uids(&self) -> Result<Vec<i64>> {
                let mut tx = self.begin_read().await?;
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT agent_uid FROM nodes WHERE agent_uid IS NOT NULL \
                     ORDER BY agent_uid",
                )
                .fetch_all(&mut *tx)
                .await?)
            }

            async fn set_org_verification(
                &self,
                actor: &Actor,
                org: i64,
                status: Verification,
                now: i64,
            ) -> Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("UPDATE orgs SET verification = $1 WHERE id = $2 RETURNING *")
                    .bind(status.as_str())
                    .bind(org)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("organisation", org))?;
                let rec = org_row(&row)?;
                audit(
                    &mut tx,
                    actor,
                    "org.verify",
                    &format!("org/{org}"),
                    &serde_json::json!({"verification": status.to_string()}).to_string(),
                    now,
                )
                .await?;
                let projects: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM projects WHERE org_id = $1 ORDER BY id")
                        .bind(org)
                        .fetch_all(&mut *tx)
                        .await?;
                for p in projects {
                    event(&mut tx, EventKind::ProjectChanged, None, None, None, &p.to_string(), now)
                        .await?;
                }
                tx.commit().await?;
                Ok(rec)
            }

            async fn import_denied_parties(
                &self,
                actor: &Actor,
                parties: Vec<DeniedParty>,
                now: i64,
            ) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let mut n = 0;
                for p in &parties {
                    let key = party_key(&p.name);
                    if key.is_empty() {
                        return Err(StoreError::invalid("name", format!("`{}` has no letters or digits", p.name)));
                    }
                    sqlx::query(
                        "INSERT INTO denied_parties (name_key, name, country, source, added_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name_key) DO UPDATE SET \
                         name = excluded.name, country = excluded.country, \
                         source = excluded.source, added_at = excluded.added_at",
                    )
                    .bind(&key)
                    .bind(&p.name)
                    .bind(&p.country)
                    .bind(&p.source)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    n += 1;
                }
                let sources: std::collections::BTreeSet<&str> =
                    parties.iter().map(|p| p.source.as_str()).collect();
                audit(
                    &mut tx,
                    actor,
                    "denied-parties.import",
                    "denied-parties",
                    &serde_json::json!({"rows": n, "sources": sources}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn list_denied_parties(&self) -> Result<Vec<DeniedParty>> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT name, country, source FROM denied_parties ORDER BY name_key",
                )
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, country, source)| DeniedParty { name, country, source })
                    .collect())
            }
        }
    };
}

pub(crate) use tenant_store;
