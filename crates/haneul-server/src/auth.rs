//! Authentication (bearer tokens, hashed at rest) and the authorisation policy: one function per
//! kind of decision, so the matrix in docs/server.md and the tests read against one place.
//!
//! Tenant isolation: an object outside the caller's organisation or projects is answered as
//! "not found", never "forbidden", so that ids do not leak what other tenants have.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use haneul_store::{JobRecord, ProjectRecord, Role, UserRecord};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The authenticated user behind a request.
pub struct Caller(pub UserRecord);

/// A user the portal resolved from its session cookie, attached to the portal's in-process API
/// requests. Only the server itself can set a request extension; nothing a client sends
/// becomes one.
#[derive(Clone)]
pub struct SessionUser(pub UserRecord);

/// Token expiry and the portal's sessions (docs/server.md, security model).
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// Expiry given to a person's token created without one; `None`: such tokens never expire.
    pub default_token_ttl: Option<Duration>,
    /// A portal session ends after this long without a request...
    pub session_idle: Duration,
    /// ...and this long after sign-in in any case.
    pub session_absolute: Duration,
    /// Mark the session cookie `Secure` (the server is reached over TLS).
    pub secure_cookie: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            default_token_ttl: None,
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 3600),
            secure_cookie: false,
        }
    }
}

/// A time as people read it in a message: `2026-12-04 20:55 UTC` (API times stay UTC).
fn utc(ms: i64) -> String {
    match crate::calendar::Calendar::new("UTC") {
        Ok(utc) => utc.date_time(ms),
        Err(_) => format!("{ms} ms since 1970 UTC"),
    }
}

/// Why a token that exists does not work, as the 401 says it.
pub fn token_refusal(t: &haneul_store::TokenRecord, now: i64) -> Option<ApiError> {
    if let Some(at) = t.revoked_at {
        return Some(ApiError::TokenEnded(format!(
            "this token was revoked (at {}); ask for a new one",
            utc(at)
        )));
    }
    if let Some(at) = t.expires_at
        && at <= now
    {
        return Some(ApiError::TokenEnded(format!(
            "this token expired at {}; create a new one with `haneul token create`",
            utc(at)
        )));
    }
    None
}

/// How long a verified token is trusted without asking the store again. A token revoked through
/// this server is dropped at once; through another server (HA) it stops working within this.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

/// A verified token: its user, its expiry, and when it was verified.
type Verified = (UserRecord, Option<i64>, Instant);

/// Verified tokens by hash, so that a busy client costs one store read per TTL, not per request.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<String, Verified>>,
}

impl TokenCache {
    fn get(&self, hash: &str, now: i64) -> Option<UserRecord> {
        let map = self.map.lock().ok()?;
        let (u, expires, at) = map.get(hash)?;
        (at.elapsed() < TOKEN_CACHE_TTL && expires.is_none_or(|e| now < e)).then(|| u.clone())
    }

    fn put(&self, hash: String, user: UserRecord, expires: Option<i64>) {
        if let Ok(mut map) = self.map.lock() {
            // Bounded: past this many live tokens, start over rather than grow.
            if map.len() >= 100_000 {
                map.clear();
            }
            map.insert(hash, (user, expires, Instant::now()));
        }
    }

    /// Forgets everything (after a revocation).
    pub fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

/// The organisation of each project this server has read. Projects are never deleted and never
/// move to another organisation, so what was read stays true: a submit checks its project from
/// here instead of reading the project's row each time.
#[derive(Default)]
pub struct ProjectOrgs {
    map: Mutex<HashMap<i64, i64>>,
}

impl ProjectOrgs {
    /// The project's organisation; `None` when there is no such project.
    pub async fn org_of(
        &self,
        store: &dyn haneul_store::Store,
        project: i64,
    ) -> Result<Option<i64>, haneul_store::StoreError> {
        if let Some(org) = self.map.lock().ok().and_then(|m| m.get(&project).copied()) {
            return Ok(Some(org));
        }
        let org = match store.get_project(project).await {
            Ok(p) => p.org_id,
            Err(haneul_store::StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Ok(mut map) = self.map.lock() {
            // Bounded: past this many projects, start over rather than grow.
            if map.len() >= 100_000 {
                map.clear();
            }
            map.insert(project, org);
        }
        Ok(Some(org))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(SessionUser(u)) = parts.extensions.get::<SessionUser>() {
            return Ok(Caller(u.clone()));
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthenticated)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        let hash = haneul_store::hash_token(token);
        let now = state.clock.now_ms();
        if let Some(user) = state.tokens.get(&hash, now) {
            return Ok(Caller(user));
        }
        let found = state
            .store
            .token_auth(&hash)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        if let Some(refusal) = token_refusal(&found.token, now) {
            return Err(refusal);
        }
        state
            .tokens
            .put(hash, found.user.clone(), found.token.expires_at);
        Ok(Caller(found.user))
    }
}

impl Caller {
    pub fn role(&self) -> Role {
        self.0.role
    }

    /// People, not agents: the tenant-facing API refuses agent tokens.
    pub fn person(&self) -> Result<&Self, ApiError> {
        if self.0.role == Role::Agent {
            return Err(ApiError::forbidden(
                "agent tokens may only use the agent protocol (/v1/agent)",
            ));
        }
        Ok(self)
    }

    pub fn admin(&self) -> Result<&Self, ApiError> {
        if self.0.role != Role::CentreAdmin {
            return Err(ApiError::forbidden(
                "only a centre administrator may do this",
            ));
        }
        Ok(self)
    }

    /// Centre administrators and auditors read everything.
    pub fn sees_all(&self) -> bool {
        matches!(self.0.role, Role::CentreAdmin | Role::Auditor)
    }

    pub fn agent(&self) -> Result<&Self, ApiError> {
        if self.0.role != Role::Agent {
            return Err(ApiError::forbidden(
                "only node agents use the agent protocol",
            ));
        }
        Ok(self)
    }

    fn in_org(&self, org: i64) -> bool {
        self.0.org_id == Some(org)
    }

    pub fn can_see_org(&self, org: i64) -> bool {
        self.sees_all()
            || (matches!(self.0.role, Role::OrgAdmin | Role::Member) && self.in_org(org))
    }

    /// Administer an organisation: its projects, users and their tokens.
    pub fn can_manage_org(&self, org: i64) -> bool {
        self.0.role == Role::CentreAdmin || (self.0.role == Role::OrgAdmin && self.in_org(org))
    }

    pub fn can_see_project(&self, p: &ProjectRecord) -> bool {
        self.can_see_project_in(p.id, p.org_id)
    }

    /// [`Caller::can_see_project`] from the project's id and organisation alone.
    pub fn can_see_project_in(&self, project: i64, org: i64) -> bool {
        self.sees_all() || self.can_manage_org(org) || self.is_member(project)
    }

    fn is_member(&self, project: i64) -> bool {
        self.0.role == Role::Member && self.0.projects.contains(&project)
    }

    /// Submit work to a project. Auditors only read; agents never submit.
    pub fn can_submit(&self, p: &ProjectRecord) -> bool {
        self.can_submit_in(p.id, p.org_id)
    }

    /// [`Caller::can_submit`] from the project's id and organisation alone.
    pub fn can_submit_in(&self, project: i64, org: i64) -> bool {
        self.can_manage_org(org) || self.is_member(project)
    }

    /// Cancel a job: its owner, or an administrator of its organisation.
    pub fn can_cancel(&self, job: &JobRecord, p: &ProjectRecord) -> bool {
        self.can_manage_org(p.org_id) || (self.is_member(p.id) && job.user_id == self.0.id)
    }

    /// Read a job's logs: the job's project members and its organisation's administrators.
    /// Auditors see that jobs ran, not what they printed.
    pub fn can_read_logs(&self, p: &ProjectRecord) -> bool {
        self.can_manage_org(p.org_id) || self.is_member(p.id)
    }

    /// Read the audit log.
    pub fn can_audit(&self) -> bool {
        self.sees_all()
    }

    pub fn can_see_user(&self, u: &UserRecord) -> bool {
        self.sees_all()
            || u.id == self.0.id
            || (self.0.role == Role::OrgAdmin && u.org_id.is_some() && u.org_id == self.0.org_id)
    }

    /// Create a user with `role` in `org`. Org admins add people to their own organisation only.
    pub fn can_create_user(&self, role: Role, org: Option<i64>) -> bool {
        match self.0.role {
            Role::CentreAdmin => true,
            Role::OrgAdmin => {
                matches!(role, Role::Member | Role::OrgAdmin)
                    && org.is_some()
                    && org == self.0.org_id
            }
            _ => false,
        }
    }

    /// Mint or revoke tokens of user `u`: one's own, or a member's by their org admin.
    pub fn can_manage_tokens_of(&self, u: &UserRecord) -> bool {
        u.id == self.0.id
            || self.0.role == Role::CentreAdmin
            || (self.0.role == Role::OrgAdmin
                && u.role == Role::Member
                && u.org_id.is_some()
                && u.org_id == self.0.org_id)
    }
}
