//! Access: how people and programs prove who they are and what was answered to them. The first
//! administrator, API tokens (only their hashes are kept), portal sessions, links to identity
//! providers (with the provisioning and approval of the users they bring) and the answers kept for
//! idempotency keys. Owns the `tokens`, `sessions`, `oidc_links` and `idempotency` tables.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// Tokens, portal sessions, identity-provider links and idempotency keys. Part of [`crate::Store`].
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Creates the first centre administrator with this token hash when there are no users yet,
    /// with a uid (and private gid) allocated from `uid_range` like any other user's, so that
    /// the administrator's own jobs never run without an identity. Returns false (and changes
    /// nothing) when users exist.
    async fn bootstrap_admin(&self, token_hash: &str, uid_range: IdRange, now: i64)
    -> Result<bool>;
    /// Stores a token for `user`; only the hash is kept.
    async fn create_token(
        &self,
        actor: &Actor,
        user: i64,
        name: &str,
        token_hash: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<TokenRecord>;
    async fn list_tokens(&self, user: Option<i64>) -> Result<Vec<TokenRecord>>;
    async fn revoke_token(&self, actor: &Actor, id: i64, now: i64) -> Result<TokenRecord>;
    /// The user a live token belongs to, or `None` for an unknown or revoked token.
    async fn authenticate(&self, token_hash: &str) -> Result<Option<UserRecord>>;
    /// The token with this hash and its user, live or not (`None`: no such token).
    async fn token_auth(&self, token_hash: &str) -> Result<Option<TokenAuth>>;
    /// A token by id.
    async fn get_token(&self, id: i64) -> Result<TokenRecord>;
    async fn create_session(
        &self,
        id_hash: &str,
        user: i64,
        token: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<()>;
    async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>>;
    /// Records activity (for the idle expiry).
    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()>;
    /// Ends a session (sign-out); its id never works again.
    async fn revoke_session(&self, id_hash: &str, now: i64) -> Result<()>;
    /// The user linked to `subject` at `issuer`, if any.
    async fn oidc_link(&self, issuer: &str, subject: &str) -> Result<Option<OidcLink>>;
    /// The link of `user`, if the user came from an identity provider.
    async fn oidc_link_of(&self, user: i64) -> Result<Option<OidcLink>>;
    /// Creates the user and its link in one transaction, audited as `user.provision`.
    async fn provision_oidc_user(
        &self,
        actor: &Actor,
        u: NewOidcUser,
        now: i64,
    ) -> Result<(UserRecord, OidcLink)>;
    /// Lets a pending user in; audited as `user.approve`. Approving twice is a conflict.
    async fn approve_oidc_user(&self, actor: &Actor, user: i64, now: i64) -> Result<OidcLink>;
    /// The answer kept for `user`'s idempotency `key`, if it was kept after `since`.
    async fn idempotent_answer(
        &self,
        user: i64,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotentAnswer>>;
    /// Keeps `answer` for `user`'s `key` (replacing one kept before `since`, and dropping every
    /// answer kept before `since`). False when the key already has an answer kept after `since`.
    async fn keep_idempotent_answer(
        &self,
        user: i64,
        key: &str,
        answer: &IdempotentAnswer,
        since: i64,
    ) -> Result<bool>;
}

/// Expands [`AccessStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! access_store {
    ($store:ty, $db:ty) => {
        fn oidc_link_row(r: &DbRow) -> Result<OidcLink> {
            Ok(OidcLink {
                issuer: r.try_get("issuer")?,
                subject: r.try_get("subject")?,
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                created_at: r.try_get("created_at")?,
                approved_at: r.try_get("approved_at")?,
                approved_by: r.try_get("approved_by")?,
            })
        }

        fn token_row(r: &DbRow) -> Result<TokenRecord> {
            Ok(TokenRecord {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        }

        #[async_trait]
        impl AccessStore for $store {
            async fn bootstrap_admin(
                &self,
                token_hash: &str,
                uid_range: IdRange,
                now: i64,
            ) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut *tx)
                    .await?;
                if users > 0 {
                    return Ok(false);
                }
                let uid = next_id(&mut tx, "users", "uid", uid_range).await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO users (name, role, org_id, created_at, uid, gid) \
                     VALUES ('admin', 'centre-admin', NULL, $1, $2, $2) RETURNING id",
                )
                .bind(now)
                .bind(uid)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO tokens (user_id, name, hash, created_at) \
                     VALUES ($1, 'bootstrap', $2, $3)",
                )
                .bind(id)
                .bind(token_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                audit(&mut tx, &Actor::system("server"), "user.bootstrap", "user/admin", "{}", now)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_token(
                &self,
                actor: &Actor,
                user: i64,
                name: &str,
                token_hash: &str,
                expires_at: Option<i64>,
                now: i64,
            ) -> Result<TokenRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO tokens (user_id, name, hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING *",
                )
                .bind(user)
                .bind(name)
                .bind(token_hash)
                .bind(now)
                .bind(expires_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "user", "token".to_string()))?;
                let rec = token_row(&row)?;
                audit(
                    &mut tx,
                    actor,
                    "token.create",
                    &format!("token/{}", rec.id),
                    &serde_json::json!({"user": user, "expires_at": expires_at}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn list_tokens(&self, user: Option<i64>) -> Result<Vec<TokenRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM tokens WHERE ($1 IS NULL OR user_id = $1) ORDER BY id",
                )
                .bind(user)
                .fetch_all(&self.read)
                .await?;
                rows.iter().map(token_row).collect()
            }

            async fn revoke_token(&self, actor: &Actor, id: i64, now: i64) -> Result<TokenRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING *",
                )
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("token", id))?;
                let rec = token_row(&row)?;
                audit(&mut tx, actor, "token.revoke", &format!("token/{id}"), "{}", now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn authenticate(&self, token_hash: &str) -> Result<Option<UserRecord>> {
                let mut tx = self.begin_read().await?;
                let row = sqlx::query(
                    "SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.hash = $1 AND t.revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let id: i64 = row.try_get("id")?;
                let projects = user_projects(&mut tx, id).await?;
                Ok(Some(user_row(&row, projects)?))
            }

            async fn token_auth(&self, token_hash: &str) -> Result<Option<TokenAuth>> {
                let Some(row) = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.read)
                    .await?
                else {
                    return Ok(None);
                };
                let token = token_row(&row)?;
                let user = self.get_user(token.user_id).await?;
                Ok(Some(TokenAuth { token, user }))
            }

            async fn get_token(&self, id: i64) -> Result<TokenRecord> {
                let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("token", id))?;
                token_row(&row)
            }

            async fn create_session(
                &self,
                id_hash: &str,
                user: i64,
                token: i64,
                expires_at: i64,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                // Sessions past their end are of no use to anyone: drop them as new ones come.
                sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, token_id, created_at, last_seen, \
                     expires_at) VALUES ($1, $2, $3, $4, $4, $5)",
                )
                .bind(id_hash)
                .bind(user)
                .bind(token)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
                let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .fetch_optional(&self.read)
                    .await?;
                row.map(|r| {
                    Ok(SessionRecord {
                        user_id: r.try_get("user_id")?,
                        token_id: r.try_get("token_id")?,
                        created_at: r.try_get("created_at")?,
                        last_seen: r.try_get("last_seen")?,
                        expires_at: r.try_get("expires_at")?,
                        revoked_at: r.try_get("revoked_at")?,
                    })
                })
                .transpose()
            }

            async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
                    .bind(now)
                    .bind(id_hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revoke_session(&self, id_hash: &str, now: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id_hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn oidc_link(&self, issuer: &str, subject: &str) -> Result<Option<OidcLink>> {
                let row =
                    sqlx::query("SELECT * FROM oidc_links WHERE issuer = $1 AND subject = $2")
                        .bind(issuer)
                        .bind(subject)
                        .fetch_optional(&self.read)
                        .await?;
                row.as_ref().map(oidc_link_row).transpose()
            }

            async fn oidc_link_of(&self, user: i64) -> Result<Option<OidcLink>> {
                let row = sqlx::query("SELECT * FROM oidc_links WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&self.read)
                    .await?;
                row.as_ref().map(oidc_link_row).transpose()
            }

            async fn provision_oidc_user(
                &self,
                actor: &Actor,
                u: NewOidcUser,
                now: i64,
            ) -> Result<(UserRecord, OidcLink)> {
                let mut tx = self.begin_write().await?;
                let uid = next_id(&mut tx, "users", "uid", u.user.uid_range).await?;
                let row = sqlx::query(
                    "INSERT INTO users (name, role, org_id, created_at, uid, gid) \
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
                )
                .bind(&u.user.name)
                .bind(u.user.role.as_str())
                .bind(u.user.org_id)
                .bind(now)
                .bind(uid)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", "a user of this name".into()))?;
                let id: i64 = row.try_get("id")?;
                let approved_at = u.approved.then_some(now);
                let approved_by = u.approved.then(|| actor.name.clone());
                let link = sqlx::query(
                    "INSERT INTO oidc_links (issuer, subject, user_id, email, created_at, \
                     approved_at, approved_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(&u.issuer)
                .bind(&u.subject)
                .bind(id)
                .bind(&u.email)
                .bind(now)
                .bind(approved_at)
                .bind(&approved_by)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "subject", "a link for this subject".into()))?;
                let rec = user_row(&row, Vec::new())?;
                let link = oidc_link_row(&link)?;
                let detail = serde_json::json!({
                    "name": u.user.name,
                    "role": u.user.role.to_string(),
                    "org": u.user.org_id,
                    "uid": uid,
                    "issuer": u.issuer,
                    "subject": u.subject,
                    "email": u.email,
                    "state": if u.approved { "approved" } else { "pending" },
                })
                .to_string();
                audit(&mut tx, actor, "user.provision", &format!("user/{id}"), &detail, now)
                    .await?;
                tx.commit().await?;
                Ok((rec, link))
            }

            async fn approve_oidc_user(
                &self,
                actor: &Actor,
                user: i64,
                now: i64,
            ) -> Result<OidcLink> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("SELECT * FROM oidc_links WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("pending user", user))?;
                let link = oidc_link_row(&row)?;
                if link.approved_at.is_some() {
                    return Err(StoreError::conflict(
                        "user",
                        format!("user {user} is already approved"),
                    ));
                }
                let row = sqlx::query(
                    "UPDATE oidc_links SET approved_at = $1, approved_by = $2 \
                     WHERE user_id = $3 RETURNING *",
                )
                .bind(now)
                .bind(&actor.name)
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
                let detail = serde_json::json!({ "issuer": link.issuer, "subject": link.subject })
                    .to_string();
                audit(&mut tx, actor, "user.approve", &format!("user/{user}"), &detail, now)
                    .await?;
                tx.commit().await?;
                oidc_link_row(&row)
            }

            async fn idempotent_answer(
                &self,
                user: i64,
                key: &str,
                since: i64,
            ) -> Result<Option<IdempotentAnswer>> {
                let row = sqlx::query(
                    "SELECT route, body_hash, status, answer, resource, created_at FROM idempotency \
                     WHERE user_id = $1 AND idem_key = $2 AND created_at >= $3",
                )
                .bind(user)
                .bind(key)
                .bind(since)
                .fetch_optional(&self.read)
                .await?;
                row.map(|r| {
                    Ok(IdempotentAnswer {
                        route: r.try_get("route")?,
                        body_hash: r.try_get("body_hash")?,
                        status: r.try_get("status")?,
                        answer: r.try_get("answer")?,
                        resource: r.try_get("resource")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .transpose()
            }

            async fn keep_idempotent_answer(
                &self,
                user: i64,
                key: &str,
                a: &IdempotentAnswer,
                since: i64,
            ) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
                    .bind(since)
                    .execute(&mut *tx)
                    .await?;
                let kept: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO idempotency (user_id, idem_key, route, body_hash, status, answer, \
                     resource, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING user_id",
                )
                .bind(user)
                .bind(key)
                .bind(&a.route)
                .bind(&a.body_hash)
                .bind(a.status)
                .bind(&a.answer)
                .bind(a.resource)
                .bind(a.created_at)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(kept.is_some())
            }
        }
    };
}

pub(crate) use access_store;
