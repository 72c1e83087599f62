//! The tenant-facing REST API under /v1: organisations, projects, users, tokens, pools, nodes,
//! jobs, awards, usage and audit. Each handler authorises first (see [`crate::auth`]), then does
//! one store call; every mutation is committed before the answer is sent.

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, Body, OptionalBody};
use crate::extract::{Id, Q};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haneul_api::*;
use haneul_store as st;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Created<T> = Result<(StatusCode, Json<T>), ApiError>;
type Answer<T> = Result<Json<T>, ApiError>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org))
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project))
        .routes(routes!(set_project_quotas))
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, update_user))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(list_nodes))
        .routes(routes!(get_node))
        .routes(routes!(set_node_state))
        .routes(routes!(fleet_summary))
        .routes(routes!(submit_job, list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(get_array_task))
        .routes(routes!(cancel_array_task))
        .routes(routes!(job_logs))
        .routes(routes!(create_award, list_awards))
        .routes(routes!(usage))
        .routes(routes!(audit))
        .routes(routes!(verify_audit))
}

fn actor(c: &Caller) -> st::Actor {
    st::Actor::user(&c.0)
}

/// The caller's own account.
#[utoipa::path(get, path = "/v1/whoami", tag = "access",
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn whoami(caller: Caller) -> Answer<User> {
    Ok(Json(convert::user(caller.0)))
}

/// Create an organisation (centre admin).
#[utoipa::path(post, path = "/v1/orgs", tag = "tenants", request_body = OrgCreate,
    responses((status = 201, body = Org), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_org(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<OrgCreate>,
) -> Created<Org> {
    caller.admin()?;
    check_name("name", &b.name)?;
    if !haneul_model::OrgClass::ALL
        .iter()
        .any(|c| c.as_str() == b.class)
    {
        return Err(ApiError::bad(
            "class",
            "use academia, institute, startup, enterprise, partner or public-agency",
        ));
    }
    if b.country.len() != 2 || !b.country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::bad(
            "country",
            "an ISO 3166-1 alpha-2 code in capitals, for example KR",
        ));
    }
    if let Some(c) = &b.parent_country
        && !crate::compliance::is_country_code(c)
    {
        return Err(ApiError::bad(
            "parent_country",
            "an ISO 3166-1 alpha-2 code in capitals, for example KR",
        ));
    }
    let verification = match b.verification.as_deref() {
        None => st::Verification::Verified,
        Some(v) => st::Verification::parse(v)
            .ok_or_else(|| ApiError::bad("verification", "use verified, pending or suspended"))?,
    };
    let parent = match b.parent {
        Some(p) => Some(
            s.store
                .get_org(p)
                .await
                .map_err(|_| ApiError::bad("parent", format!("no organisation {p}")))?,
        ),
        None => None,
    };
    crate::compliance::screen_registration(&s, &actor(&caller), &b, parent.as_ref()).await?;
    let o = s
        .store
        .create_org(
            &actor(&caller),
            st::NewOrg {
                name: b.name,
                class: b.class,
                country: b.country,
                parent: b.parent,
                parent_country: b.parent_country,
                verification,
            },
            s.clock.now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(convert::org(o))))
}

/// Organisations the caller may see.
#[utoipa::path(get, path = "/v1/orgs", tag = "tenants",
    responses((status = 200, body = Vec<Org>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_orgs(State(s): State<AppState>, caller: Caller) -> Answer<Vec<Org>> {
    caller.person()?;
    let orgs = s.store.list_orgs().await?;
    Ok(Json(
        orgs.into_iter()
            .filter(|o| caller.can_see_org(o.id))
            .map(convert::org)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/orgs/{id}", tag = "tenants",
    params(("id" = i64, Path, description = "organisation id", minimum = 1)),
    responses((status = 200, body = Org), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_org(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Answer<Org> {
    caller.person()?;
    if !caller.can_see_org(id) {
        return Err(ApiError::not_found("organisation", id));
    }
    Ok(Json(convert::org(s.store.get_org(id).await?)))
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    crate::validate::name(field, name, 128)
}

/// Create a project in an organisation (centre admin, or that organisation's admin).
#[utoipa::path(post, path = "/v1/projects", tag = "tenants", request_body = ProjectCreate,
    responses((status = 201, body = Project), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_project(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<ProjectCreate>,
) -> Created<Project> {
    caller.person()?;
    check_name("name", &b.name)?;
    if !caller.can_see_org(b.org) {
        return Err(ApiError::bad("org", format!("no organisation {}", b.org)));
    }
    if !caller.can_manage_org(b.org) {
        return Err(ApiError::forbidden(
            "only a centre admin or the organisation's admin may create projects",
        ));
    }
    if !(1..=1_000_000).contains(&b.weight) {
        return Err(ApiError::bad("weight", "must be 1 to 1000000"));
    }
    let quotas = convert::quotas_from_api(&b.quotas)?;
    s.store
        .get_org(b.org)
        .await
        .map_err(|_| ApiError::bad("org", format!("no organisation {}", b.org)))?;
    let p = s
        .store
        .create_project(
            &actor(&caller),
            st::NewProject {
                org_id: b.org,
                name: b.name,
                weight: b.weight,
                quotas,
                gid_range: s.identity.project_gid_range,
            },
            s.clock.now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(convert::project(p))))
}

/// Projects the caller may see.
#[utoipa::path(get, path = "/v1/projects", tag = "tenants",
    responses((status = 200, body = Vec<Project>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_projects(State(s): State<AppState>, caller: Caller) -> Answer<Vec<Project>> {
    caller.person()?;
    let all = s.store.list_projects().await?;
    Ok(Json(
        all.into_iter()
            .filter(|p| caller.can_see_project(p))
            .map(convert::project)
            .collect(),
    ))
}

async fn visible_project(
    s: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<st::ProjectRecord, ApiError> {
    match s.store.get_project(id).await {
        Ok(p) if caller.can_see_project(&p) => Ok(p),
        Ok(_) | Err(st::StoreError::NotFound { .. }) => Err(ApiError::not_found("project", id)),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/v1/projects/{id}", tag = "tenants",
    params(("id" = i64, Path, description = "project id", minimum = 1)),
    responses((status = 200, body = Project), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_project(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Answer<Project> {
    caller.person()?;
    Ok(Json(convert::project(
        visible_project(&s, &caller, id).await?,
    )))
}

/// Replace a project's quotas (centre admin, or the project's organisation's admin). The
/// scheduler applies them at once; running work above a lowered guarantee becomes preemptible.
#[utoipa::path(put, path = "/v1/projects/{id}/quotas", tag = "tenants",
    params(("id" = i64, Path, description = "project id", minimum = 1)),
    request_body = ProjectQuotas,
    responses((status = 200, body = Project), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn set_project_quotas(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<ProjectQuotas>,
) -> Answer<Project> {
    caller.person()?;
    let p = visible_project(&s, &caller, id).await?;
    if !caller.can_manage_org(p.org_id) {
        return Err(ApiError::forbidden(
            "only a centre admin or the organisation's admin may set quotas",
        ));
    }
    let quotas = convert::quotas_from_api(&b.quotas)?;
    let p = s
        .store
        .set_project_quotas(&actor(&caller), id, quotas, s.clock.now_ms())
        .await?;
    s.signals.wake.notify_one();
    Ok(Json(convert::project(p)))
}

/// Create a user. Centre admins create any role; org admins add members and org admins to
/// their own organisation.
#[utoipa::path(post, path = "/v1/users", tag = "access", request_body = UserCreate,
    responses((status = 201, body = User), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<UserCreate>,
) -> Created<User> {
    caller.person()?;
    check_name("name", &b.name)?;
    let role = convert::role_from_api(b.role);
    let needs_org = matches!(role, st::Role::OrgAdmin | st::Role::Member);
    if needs_org != b.org.is_some() {
        return Err(ApiError::bad(
            "org",
            if needs_org {
                "org-admin and member users belong to an organisation"
            } else {
                "centre-admin, auditor and agent users belong to no organisation"
            },
        ));
    }
    if !b.projects.is_empty() && role != st::Role::Member {
        return Err(ApiError::bad("projects", "only members are given projects"));
    }
    if !caller.can_create_user(role, b.org) {
        return Err(ApiError::forbidden(
            "you may not create a user with this role in this organisation",
        ));
    }
    if let Some(o) = b.org {
        s.store
            .get_org(o)
            .await
            .map_err(|_| ApiError::bad("org", format!("no organisation {o}")))?;
    }
    if (b.uid.is_some() || b.gid.is_some()) && caller.admin().is_err() {
        return Err(ApiError::forbidden(
            "only a centre administrator may choose a user's uid or gid (it decides whose files \
             the user's tasks can touch); leave them out to have them allocated",
        ));
    }
    check_ids(&s, b.uid, b.gid).await?;
    let u = s
        .store
        .create_user(
            &actor(&caller),
            st::NewUser {
                name: b.name,
                role,
                org_id: b.org,
                projects: b.projects,
                uid: b.uid,
                gid: b.gid,
                uid_range: s.identity.uid_range,
            },
            s.clock.now_ms(),
        )
        .await
        .map_err(|e| match e {
            st::StoreError::NotFound { id, .. } => {
                ApiError::bad("projects", format!("no project {id}"))
            }
            e => e.into(),
        })?;
    Ok((StatusCode::CREATED, Json(convert::user(u))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    /// Only users who signed in with an identity provider and wait for their organisation's
    /// administrator to approve them (`POST /v1/users/{id}/approve`).
    pending: Option<bool>,
}

/// Users the caller may see.
#[utoipa::path(get, path = "/v1/users", tag = "access", params(UserQuery),
    responses((status = 200, body = Vec<User>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<UserQuery>,
) -> Answer<Vec<User>> {
    caller.person()?;
    let all = s.store.list_users().await?;
    let mut out = Vec::new();
    for u in all.into_iter().filter(|u| caller.can_see_user(u)) {
        if q.pending == Some(true) {
            // Only users from an identity provider have a link; operators' users never wait.
            let waiting = s
                .store
                .oidc_link_of(u.id)
                .await?
                .is_some_and(|l| l.approved_at.is_none());
            if !waiting {
                continue;
            }
        }
        out.push(convert::user(u));
    }
    Ok(Json(out))
}

async fn visible_user(s: &AppState, caller: &Caller, id: i64) -> Result<st::UserRecord, ApiError> {
    match s.store.get_user(id).await {
        Ok(u) if caller.can_see_user(&u) => Ok(u),
        Ok(_) | Err(st::StoreError::NotFound { .. }) => Err(ApiError::not_found("user", id)),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "access",
    params(("id" = i64, Path, description = "user id", minimum = 1)),
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_user(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Answer<User> {
    caller.person()?;
    Ok(Json(convert::user(visible_user(&s, &caller, id).await?)))
}

/// Refuses a uid or gid of 0, out of range, or (a uid) that an agent runs as.
async fn check_ids(s: &AppState, uid: Option<i64>, gid: Option<i64>) -> Result<(), ApiError> {
    let agents = s.store.agent_uids().await?;
    if let Some(u) = uid {
        crate::identity::check_id("uid", u, &agents)?;
    }
    if let Some(g) = gid {
        crate::identity::check_id("gid", g, &agents)?;
    }
    Ok(())
}

/// Set a user's Unix uid or primary gid (centre administrators). The user's tasks started from
/// now on run with them; files the old ids own are the operator's to hand over (`chown`).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "access", request_body = UserUpdate,
    params(("id" = i64, Path, description = "user id", minimum = 1)),
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn update_user(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<UserUpdate>,
) -> Answer<User> {
    caller.admin()?;
    if b.uid.is_none() && b.gid.is_none() {
        return Err(ApiError::bad("uid", "give uid, gid or both"));
    }
    check_ids(&s, b.uid, b.gid).await?;
    visible_user(&s, &caller, id).await?;
    let u = s
        .store
        .update_user_ids(&actor(&caller), id, b.uid, b.gid, s.clock.now_ms())
        .await?;
    Ok(Json(convert::user(u)))
}

/// A new 256-bit token as text.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("hn_{}", hex::encode(bytes))
}

/// Mint a token for oneself, or (admins) for a user one manages. The secret is in the answer
/// only; the server stores its hash.
#[utoipa::path(post, path = "/v1/tokens", tag = "access", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<TokenCreate>,
) -> Created<TokenCreated> {
    caller.person()?;
    crate::validate::optional_name("name", &b.name, 128)?;
    let target = match b.user {
        None => caller.0.clone(),
        Some(id) => visible_user(&s, &caller, id)
            .await
            .map_err(|_| ApiError::bad("user", format!("no user {id}")))?,
    };
    if !caller.can_manage_tokens_of(&target) {
        return Err(ApiError::forbidden("you may not mint tokens for this user"));
    }
    const MAX_TTL_S: i64 = 10 * 365 * 86_400;
    let now = s.clock.now_ms();
    let ttl_s = match b.expires_in_s {
        Some(t) if !(60..=MAX_TTL_S).contains(&t) => {
            return Err(ApiError::bad(
                "expires_in_s",
                format!("must be 60 to {MAX_TTL_S} seconds (ten years)"),
            ));
        }
        Some(t) => Some(t),
        // Agents run unattended; an expiry would stop a node some night. People's tokens get
        // the centre's default.
        None if target.role == st::Role::Agent => None,
        None => s.sessions.default_token_ttl.map(|d| d.as_secs() as i64),
    };
    let secret = new_secret();
    let t = s
        .store
        .create_token(
            &actor(&caller),
            target.id,
            &b.name,
            &haneul_store::hash_token(&secret),
            ttl_s.map(|t| now + t * 1000),
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: convert::token(t),
            secret,
        }),
    ))
}

/// Tokens of the caller (all tokens for a centre admin). Secrets are never shown again.
#[utoipa::path(get, path = "/v1/tokens", tag = "access",
    responses((status = 200, body = Vec<Token>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_tokens(State(s): State<AppState>, caller: Caller) -> Answer<Vec<Token>> {
    caller.person()?;
    let user = (caller.role() != st::Role::CentreAdmin).then_some(caller.0.id);
    let all = s.store.list_tokens(user).await?;
    Ok(Json(all.into_iter().map(convert::token).collect()))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "access",
    params(("id" = i64, Path, description = "token id", minimum = 1)),
    responses((status = 200, body = Token), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn revoke_token(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Answer<Token> {
    caller.person()?;
    let tokens = s.store.list_tokens(None).await?;
    let Some(t) = tokens.into_iter().find(|t| t.id == id) else {
        return Err(ApiError::not_found("token", id));
    };
    let owner = s.store.get_user(t.user_id).await?;
    if !caller.can_see_user(&owner) {
        return Err(ApiError::not_found("token", id));
    }
    if !caller.can_manage_tokens_of(&owner) {
        return Err(ApiError::forbidden("you may not revoke this user's tokens"));
    }
    let t = s
        .store
        .revoke_token(&actor(&caller), id, s.clock.now_ms())
        .await?;
    s.tokens.clear();
    Ok(Json(convert::token(t)))
}

/// Create a pool (centre admin).
#[utoipa::path(post, path = "/v1/pools", tag = "fleet", request_body = PoolCreate,
    responses((status = 201, body = Pool), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_pool(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<PoolCreate>,
) -> Created<Pool> {
    caller.admin()?;
    check_name("name", &b.name)?;
    let lending = match b.lending.as_str() {
        "open" => haneul_model::Lending::Open,
        "owner-only" => haneul_model::Lending::OwnerOnly,
        _ => return Err(ApiError::bad("lending", "use `open` or `owner-only`")),
    };
    if lending == haneul_model::Lending::OwnerOnly && b.owner.is_none() {
        return Err(ApiError::bad("owner", "an owner-only pool needs an owner"));
    }
    if let Some(o) = b.owner {
        s.store
            .get_org(o)
            .await
            .map_err(|_| ApiError::bad("owner", format!("no organisation {o}")))?;
    }
    let p = s
        .store
        .create_pool(
            &actor(&caller),
            st::NewPool {
                name: b.name,
                owner: b.owner,
                lending,
            },
            s.clock.now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(convert::pool(p))))
}

#[utoipa::path(get, path = "/v1/pools", tag = "fleet",
    responses((status = 200, body = Vec<Pool>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_pools(State(s): State<AppState>, caller: Caller) -> Answer<Vec<Pool>> {
    caller.person()?;
    Ok(Json(
        s.store
            .list_pools()
            .await?
            .into_iter()
            .map(convert::pool)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/nodes", tag = "fleet",
    responses((status = 200, body = Vec<Node>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_nodes(State(s): State<AppState>, caller: Caller) -> Answer<Vec<Node>> {
    caller.person()?;
    Ok(Json(
        s.store
            .list_nodes()
            .await?
            .into_iter()
            .map(convert::node)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "fleet",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_node(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Answer<Node> {
    caller.person()?;
    Ok(Json(convert::node(s.store.get_node(id).await?)))
}

/// Drain or resume a node (centre admin).
#[utoipa::path(post, path = "/v1/nodes/{id}/state", tag = "fleet",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    request_body = NodeStateChange,
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn set_node_state(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<NodeStateChange>,
) -> Answer<Node> {
    caller.admin()?;
    let state = match b.state.as_str() {
        "draining" => st::NodeState::Draining,
        "up" => st::NodeState::Up,
        _ => return Err(ApiError::bad("state", "use `draining` or `up`")),
    };
    let reason = crate::validate::reason(b.reason.as_deref())?;
    let n = s
        .store
        .set_node_state(&actor(&caller).because(reason), id, state, s.clock.now_ms())
        .await?;
    s.signals.wake.notify_one();
    Ok(Json(convert::node(n)))
}

/// GPUs by pool and model (allocated, idle, draining, down), the queue by project and the GPUs
/// held per node, from one consistent read (centre admins and auditors).
#[utoipa::path(get, path = "/v1/fleet/summary", tag = "fleet",
    responses((status = 200, body = FleetSummary), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn fleet_summary(State(s): State<AppState>, caller: Caller) -> Answer<FleetSummary> {
    caller.person()?;
    if !caller.sees_all() {
        return Err(ApiError::forbidden(
            "only centre admins and auditors read the fleet summary",
        ));
    }
    let at = s.clock.now_ms();
    let summary = s.store.fleet_summary().await?;
    let projects: std::collections::BTreeMap<i64, st::ProjectRecord> = s
        .store
        .list_projects()
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    Ok(Json(FleetSummary {
        at,
        gpus: summary
            .gpus
            .into_iter()
            .map(|g| FleetGpus {
                pool: g.pool_id,
                pool_name: g.pool,
                gpu_model: g.gpu_model,
                nodes: g.nodes,
                total: g.total,
                allocated: g.allocated,
                allocated_milli: g.allocated_milli,
                idle: g.idle,
                draining: g.draining,
                down: g.down,
            })
            .collect(),
        queue: summary
            .queue
            .into_iter()
            .filter(|q| q.queued_jobs + q.running_jobs > 0)
            .map(|q| {
                let p = projects.get(&q.project_id);
                ProjectQueue {
                    project: q.project_id,
                    project_name: p.map(|p| p.name.clone()).unwrap_or_default(),
                    org: p.map(|p| p.org_id).unwrap_or_default(),
                    queued_jobs: q.queued_jobs,
                    queued_gpu_milli: q.queued_gpu_milli,
                    running_jobs: q.running_jobs,
                }
            })
            .collect(),
        nodes: summary
            .nodes
            .into_iter()
            .map(|n| NodeAllocation {
                node: n.node_id,
                allocated: n.allocated,
                allocated_milli: n.allocated_milli,
            })
            .collect(),
    }))
}

/// Submit a job. The answer comes after the job is durably queued.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobSubmit,
    responses((status = 201, body = Job), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn submit_job(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Body(b): Body<JobSubmit>,
) -> Result<axum::response::Response, ApiError> {
    use crate::idempotency as idem;
    use axum::response::IntoResponse;
    caller.person()?;
    // The request as parsed, so that a retry that spells the same JSON otherwise is the same.
    // A key seen before is not looked up first: the submit's own transaction refuses a key
    // with a live answer (a conflict, answered below with that answer), so a first submit,
    // by far the usual one, costs no read for it.
    let key = idem::key_of(&headers)?;
    let now = s.clock.now_ms();
    let idempotency = key.map(|key| st::NewIdempotency {
        key,
        route: "/v1/jobs".into(),
        body_hash: idem::request_hash("/v1/jobs", &serde_json::to_vec(&b).unwrap_or_default()),
        since: idem::since(now),
    });
    let spec = convert::job_spec(&b)?;
    let container_image = match &b.container_image {
        Some(image) => {
            s.identity.check_image(image)?;
            Some(crate::identity::qualified(image))
        }
        None => None,
    };
    let batch = b.batch.as_ref().map(convert::batch_from_api).transpose()?;
    if b.interactive {
        interactive_shape(&b)?;
    }
    let array = b
        .array
        .as_deref()
        .map(|a| {
            haneul_model::ArraySpec::parse(a).map_err(|e| match e {
                haneul_model::ModelError::Invalid { reason, .. } => ApiError::bad("array", reason),
                e => ApiError::bad("array", e.to_string()),
            })
        })
        .transpose()?;
    match s.project_orgs.org_of(s.store.as_ref(), b.project).await? {
        Some(org) if caller.can_see_project_in(b.project, org) => {
            if !caller.can_submit_in(b.project, org) {
                return Err(ApiError::forbidden(
                    "you may not submit jobs to this project",
                ));
            }
        }
        _ => {
            return Err(ApiError::bad(
                "project",
                format!("no project {}", b.project),
            ));
        }
    }
    // A parent the caller cannot see is refused like one that does not exist, so dependencies
    // reveal nothing of other tenants' jobs.
    for (i, d) in spec.dependencies.iter().enumerate() {
        let id = d.job.0 as i64;
        if visible_job(&s, &caller, id).await.is_err() {
            return Err(ApiError::bad(
                format!("dependencies[{i}].job"),
                format!("no job {id}; `haneul queue` lists the jobs you can see"),
            ));
        }
    }
    let retry = idempotency.clone();
    let j = s
        .submits
        .call((
            actor(&caller),
            st::NewJob {
                user_id: caller.0.id,
                spec,
                command: b.command,
                container_image,
                batch,
                idempotency,
                array,
                interactive: b.interactive,
            },
        ))
        .await;
    let j = match (j, retry) {
        (Ok(j), _) => j,
        // The same key raced in twice: the other one made the job; answer with it.
        (Err(ApiError::Conflict { field, .. }), Some(k)) if field == "Idempotency-Key" => {
            match replay_submit(&s, &caller, &k.key, &k.body_hash, now).await? {
                Some(r) => return Ok(r),
                None => return Err(ApiError::Unavailable("retry the submit".into())),
            }
        }
        (Err(e), _) => return Err(e),
    };
    s.signals.wake.notify_one();
    Ok((StatusCode::CREATED, Json(convert::job(j))).into_response())
}

/// An interactive session is one task on one terminal: no gang, no array, and (for now) no
/// container, whose runtime would need a terminal of its own.
fn interactive_shape(b: &JobSubmit) -> Result<(), ApiError> {
    if b.replicas != 1 {
        return Err(ApiError::bad(
            "replicas",
            "an interactive job runs one task; use --nodes 1, or submit a batch job for several nodes",
        ));
    }
    if b.array.is_some() {
        return Err(ApiError::bad(
            "array",
            "an interactive job cannot be an array; submit the array as a batch job",
        ));
    }
    if b.container_image.is_some() {
        return Err(ApiError::bad(
            "container_image",
            "interactive jobs run without a container image for now; start the container \
             from the shell (apptainer shell IMAGE)",
        ));
    }
    Ok(())
}

/// The answer to a submit whose key is known: the job it made, as it is now; 422 when the key
/// came with another request. `None` for a new key.
async fn replay_submit(
    s: &AppState,
    caller: &Caller,
    key: &str,
    hash: &str,
    now: i64,
) -> Result<Option<axum::response::Response>, ApiError> {
    use crate::idempotency as idem;
    let Some(a) = s
        .store
        .idempotent_answer(caller.0.id, key, idem::since(now))
        .await?
    else {
        return Ok(None);
    };
    if a.route != "/v1/jobs" || a.body_hash != hash {
        return Err(idem::reused());
    }
    let Some(id) = a.resource else {
        return Err(idem::reused());
    };
    let job = s.store.get_job(id).await?;
    let body =
        serde_json::to_string(&convert::job(job)).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Some(idem::replay(201, body)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct JobQuery {
    /// Only this project's jobs.
    #[param(minimum = 1)]
    project: Option<i64>,
    /// Only jobs in this state.
    #[param(value_type = Option<JobStateName>)]
    state: Option<String>,
    /// Jobs with ids below this (the previous page's `next_before`).
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Jobs the caller may see, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = JobList), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_jobs(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<JobQuery>,
) -> Answer<JobList> {
    caller.person()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("limit", "must be 1 to 1000"));
    }
    if q.project.is_some_and(|p| p < 1) {
        return Err(ApiError::bad(
            "project",
            "a project id is a positive integer",
        ));
    }
    let state = match &q.state {
        None => None,
        Some(v) => Some(st::JobState::parse(v).ok_or_else(|| {
            ApiError::bad(
                "state",
                "use queued, running, stopping, succeeded, failed, cancelled or timed_out",
            )
        })?),
    };
    let projects = if caller.sees_all() {
        q.project.map(|p| vec![p])
    } else {
        let visible: Vec<i64> = s
            .store
            .list_projects()
            .await?
            .into_iter()
            .filter(|p| caller.can_see_project(p))
            .map(|p| p.id)
            .filter(|id| q.project.is_none_or(|want| want == *id))
            .collect();
        Some(visible)
    };
    let jobs = s
        .store
        .list_jobs(&st::JobFilter {
            projects,
            state,
            before: q.before,
            limit,
        })
        .await?;
    let next_before = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobList {
        jobs: jobs
            .into_iter()
            .map(|j| s.signals.with_reason(convert::job(j)))
            .collect(),
        next_before,
    }))
}

pub(crate) async fn visible_job(
    s: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<(st::JobRecord, st::ProjectRecord), ApiError> {
    let job = match s.store.get_job(id).await {
        Ok(j) => j,
        Err(st::StoreError::NotFound { .. }) => return Err(ApiError::not_found("job", id)),
        Err(e) => return Err(e.into()),
    };
    let p = s.store.get_project(job.project_id).await?;
    if !caller.can_see_project(&p) {
        return Err(ApiError::not_found("job", id));
    }
    Ok((job, p))
}

/// A job with its attempts and history.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "job id", minimum = 1)),
    responses((status = 200, body = JobDetail), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_job(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Answer<JobDetail> {
    caller.person()?;
    let (job, _) = visible_job(&s, &caller, id).await?;
    job_detail(&s, job).await
}

async fn job_detail(s: &AppState, job: st::JobRecord) -> Answer<JobDetail> {
    let id = job.id;
    let attempts = s.store.list_attempts(id).await?;
    let events = s.store.job_events(id).await?;
    Ok(Json(JobDetail {
        job: s.signals.with_reason(convert::job(job)),
        attempts: attempts.into_iter().map(convert::attempt).collect(),
        events: events
            .into_iter()
            .map(|e| JobEvent {
                seq: e.seq,
                at: e.at,
                kind: e.kind.to_string(),
                attempt: e.attempt_id,
                detail: e.detail,
            })
            .collect(),
    }))
}

/// Cancel a job: a queued job at once; a running one is stopped by its agents (state
/// `stopping`, then `cancelled`).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    request_body(content = Option<ActionReason>, description = "why, for the audit log (optional)"),
    params(("id" = i64, Path, description = "job id", minimum = 1)),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn cancel_job(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    OptionalBody(why): OptionalBody<ActionReason>,
) -> Answer<Job> {
    caller.person()?;
    let reason = crate::validate::reason(why.reason.as_deref())?;
    let (job, p) = visible_job(&s, &caller, id).await?;
    if !caller.can_cancel(&job, &p) {
        return Err(ApiError::forbidden(
            "only the job's owner or its organisation's admin may cancel it",
        ));
    }
    let j = s
        .store
        .cancel_job(&actor(&caller).because(reason), id, s.clock.now_ms())
        .await?;
    // The controller, woken, tells the job's nodes (`StopRequested`): a signal to every
    // node from here would wake each of a centre's long polls for one job.
    s.signals.wake.notify_one();
    Ok(Json(convert::job(j)))
}

/// The array and task ids of `/v1/jobs/{id}/tasks/{task}`, each checked with its own error.
fn array_path(raw: &(String, String)) -> Result<(i64, i64), ApiError> {
    let id = raw
        .0
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            ApiError::bad(
                "id",
                format!("`{}` is not an id (a positive integer)", raw.0),
            )
        })?;
    let task = raw
        .1
        .parse::<i64>()
        .ok()
        .filter(|v| (0..=i64::from(haneul_model::MAX_ARRAY_TASK_ID)).contains(v))
        .ok_or_else(|| {
            ApiError::bad(
                "task",
                format!(
                    "`{}` is not a task id (0 to {})",
                    raw.1,
                    haneul_model::MAX_ARRAY_TASK_ID
                ),
            )
        })?;
    Ok((id, task))
}

/// One task of a job array (`ID_TASK`), with its attempts and history, once the controller has
/// made it a job; 404 for a task still waiting in the array (its array shows it as pending).
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{task}", tag = "jobs",
    params(("id" = i64, Path, description = "the array's job id", minimum = 1),
        ("task" = String, Path, description = "the task's id in the array, 0 to 999999",
            pattern = "^[0-9]{1,6}$")),
    responses((status = 200, body = JobDetail), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn get_array_task(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(raw): axum::extract::Path<(String, String)>,
) -> Answer<JobDetail> {
    caller.person()?;
    let (id, task) = array_path(&raw)?;
    let (array, _) = visible_job(&s, &caller, id).await?;
    let Some(spec) = array.array_spec() else {
        return Err(ApiError::bad("id", format!("job {id} is not an array")));
    };
    let Some(job) = s.store.array_task(id, task).await? else {
        let known = u32::try_from(task).is_ok_and(|t| spec.tasks().binary_search(&t).is_ok());
        return Err(ApiError::not_found(
            "array task",
            if known {
                format!("{id}_{task} (it is still pending in the array)")
            } else {
                format!("{id}_{task} (the array's tasks are {spec})")
            },
        ));
    };
    job_detail(&s, job).await
}

/// Cancel one task of a job array: stopped if it runs, and never started if it has not.
#[utoipa::path(post, path = "/v1/jobs/{id}/tasks/{task}/cancel", tag = "jobs",
    request_body(content = Option<ActionReason>, description = "why, for the audit log (optional)"),
    params(("id" = i64, Path, description = "the array's job id", minimum = 1),
        ("task" = String, Path, description = "the task's id in the array, 0 to 999999",
            pattern = "^[0-9]{1,6}$")),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn cancel_array_task(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(raw): axum::extract::Path<(String, String)>,
    OptionalBody(why): OptionalBody<ActionReason>,
) -> Answer<Job> {
    caller.person()?;
    let (id, task) = array_path(&raw)?;
    let reason = crate::validate::reason(why.reason.as_deref())?;
    let (job, p) = visible_job(&s, &caller, id).await?;
    if !caller.can_cancel(&job, &p) {
        return Err(ApiError::forbidden(
            "only the job's owner or its organisation's admin may cancel it",
        ));
    }
    if job.array.is_none() {
        return Err(ApiError::bad("id", format!("job {id} is not an array")));
    }
    let j = s
        .store
        .cancel_array_task(&actor(&caller).because(reason), id, task, s.clock.now_ms())
        .await?;
    // The controller, woken, tells the job's nodes (`StopRequested`): a signal to every
    // node from here would wake each of a centre's long polls for one job.
    s.signals.wake.notify_one();
    Ok(Json(convert::job(j)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// Chunks after this id (the last id seen), to follow a log.
    after: Option<i64>,
    /// At most this many chunks, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
}

/// A job's output, oldest first, across its attempts.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = i64, Path, description = "job id", minimum = 1), LogQuery),
    responses((status = 200, body = Vec<LogChunk>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn job_logs(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Q(q): Q<LogQuery>,
) -> Answer<Vec<LogChunk>> {
    caller.person()?;
    let (_, p) = visible_job(&s, &caller, id).await?;
    if !caller.can_read_logs(&p) {
        return Err(ApiError::forbidden(
            "only the project's members read its logs",
        ));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad("limit", "must be 1 to 10000"));
    }
    let logs = s.store.read_logs(id, q.after.unwrap_or(0), limit).await?;
    Ok(Json(
        logs.into_iter()
            .map(|l| LogChunk::new(l.id, l.fence, l.task, &l.data, l.at))
            .collect(),
    ))
}

/// Grant GPU-hours to a project (centre admin).
#[utoipa::path(post, path = "/v1/awards", tag = "awards", request_body = AwardCreate,
    responses((status = 201, body = Award), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn create_award(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<AwardCreate>,
) -> Created<Award> {
    caller.admin()?;
    let model = haneul_model::GpuModel::new(&b.gpu_model)?;
    s.store
        .get_project(b.project)
        .await
        .map_err(|_| ApiError::bad("project", format!("no project {}", b.project)))?;
    let cal = &s.accounting.time_zone;
    let valid_from = moment(cal, "valid_from", &b.valid_from)?;
    let valid_until = moment(cal, "valid_until", &b.valid_until)?;
    let a = s
        .store
        .create_award(
            &actor(&caller),
            st::NewAward {
                project_id: b.project,
                gpu_model: model,
                gpu_hours: b.gpu_hours,
                valid_from,
                valid_until,
                gpu_quota: b.gpu_quota,
                application_id: None,
            },
            s.clock.now_ms(),
        )
        .await?;
    s.signals.wake.notify_one();
    Ok((StatusCode::CREATED, Json(convert::award(a))))
}

/// A moment in Unix milliseconds; a date is its midnight in the centre's time zone.
fn moment(
    cal: &crate::calendar::Calendar,
    field: &str,
    when: &haneul_api::TimeOrDate,
) -> Result<i64, ApiError> {
    match when {
        haneul_api::TimeOrDate::Millis(ms) => Ok(*ms),
        haneul_api::TimeOrDate::Date(d) => cal.parse_date(d).ok_or_else(|| {
            let shown: String = d.chars().filter(|c| !c.is_control()).take(32).collect();
            ApiError::bad(
                field,
                format!("expected Unix milliseconds or a date YYYY-MM-DD, got `{shown}`"),
            )
        }),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ProjectQuery {
    /// Only this project.
    project: Option<i64>,
}

async fn visible_projects(
    s: &AppState,
    caller: &Caller,
    only: Option<i64>,
) -> Result<Vec<i64>, ApiError> {
    Ok(s.store
        .list_projects()
        .await?
        .into_iter()
        .filter(|p| caller.can_see_project(p))
        .map(|p| p.id)
        .filter(|id| only.is_none_or(|o| o == *id))
        .collect())
}

/// Awards of the projects the caller may see.
#[utoipa::path(get, path = "/v1/awards", tag = "awards", params(ProjectQuery),
    responses((status = 200, body = Vec<Award>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_awards(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<ProjectQuery>,
) -> Answer<Vec<Award>> {
    caller.person()?;
    let visible = visible_projects(&s, &caller, q.project).await?;
    let all = s.store.list_awards(q.project).await?;
    Ok(Json(
        all.into_iter()
            .filter(|a| visible.contains(&a.project_id))
            .map(convert::award)
            .collect(),
    ))
}

/// GPU-hours used by ended attempts, per project and GPU model.
#[utoipa::path(get, path = "/v1/usage", tag = "awards", params(ProjectQuery),
    responses((status = 200, body = Vec<Usage>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn usage(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<ProjectQuery>,
) -> Answer<Vec<Usage>> {
    caller.person()?;
    let visible = visible_projects(&s, &caller, q.project).await?;
    let all = s.store.usage(q.project).await?;
    Ok(Json(
        all.into_iter()
            .filter(|u| visible.contains(&u.project_id))
            .map(|u| Usage {
                project: u.project_id,
                gpu_model: u.gpu_model,
                gpu_hours: u.gpu_ms as f64 / 3_600_000.0,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Entries after this sequence number.
    after: Option<i64>,
    /// At most this many entries, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
}

/// The audit log (centre admins and auditors).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<AuditQuery>,
) -> Answer<Vec<AuditEntry>> {
    caller.person()?;
    if !caller.can_audit() {
        return Err(ApiError::forbidden(
            "only centre admins and auditors read the audit log",
        ));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad("limit", "must be 1 to 10000"));
    }
    let entries = s.store.list_audit(q.after.unwrap_or(0), limit).await?;
    Ok(Json(entries.into_iter().map(convert::audit).collect()))
}

/// Recompute the audit hash chain; 200 when intact.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerify), (status = "4XX", body = ErrorBody),
        (status = 500, body = ErrorBody)),
    security(("token" = [])))]
async fn verify_audit(State(s): State<AppState>, caller: Caller) -> Answer<AuditVerify> {
    caller.person()?;
    if !caller.can_audit() {
        return Err(ApiError::forbidden(
            "only centre admins and auditors read the audit log",
        ));
    }
    Ok(Json(AuditVerify {
        entries: s.store.verify_audit().await?,
    }))
}
