//! The portal's side of signing in with an institution (docs/oidc.md): the "Sign in with ..."
//! buttons, the start (a redirect to the provider) and the callback, which opens a portal
//! session the way a token sign-in does: a token of its own, ending with the session.
//!
//! The session cookie is SameSite=Strict, which a browser does not send on a navigation that
//! another site started, the provider's redirect back included. So the callback answers with a
//! small page that moves on to `/portal` by itself (a navigation of this site), and the state
//! of the sign-in in flight rides in a SameSite=Lax cookie of its own, checked against the
//! `state` the provider brings back (a sign-in started in another browser is refused).

use super::{Base, Ctx, render, session_cookie, session_hash};
use crate::AppState;
use crate::oidc::Refused;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

const STATE_COOKIE: &str = "haneul_oidc";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal/oidc/{id}", get(start))
        .route("/portal/oidc/{id}/callback", get(callback))
}

/// The sign-in page's buttons: (issuer id, "Sign in with NAME").
pub(super) fn buttons(ctx: &Ctx) -> Vec<(String, String)> {
    ctx.state
        .oidc
        .issuers
        .iter()
        .map(|i| {
            (
                i.cfg.id.clone(),
                ctx.t().sign_in_with.replace("{}", &i.cfg.name),
            )
        })
        .collect()
}

#[derive(Template)]
#[template(path = "portal/sso_refused.html")]
struct RefusedPage {
    base: Base,
    kind: &'static str,
    message: String,
}

fn refused(ctx: &Ctx, r: Refused) -> Response {
    let (status, kind) = match &r {
        Refused::Failed(_) => (StatusCode::UNAUTHORIZED, "failed"),
        Refused::NoMapping(_) => (StatusCode::FORBIDDEN, "no-account"),
        Refused::Pending(_) => (StatusCode::FORBIDDEN, "pending"),
    };
    (
        status,
        [(header::SET_COOKIE, state_cookie(ctx, "", 0))],
        render(&RefusedPage {
            base: ctx.anonymous_base(),
            kind,
            message: r.message().to_string(),
        }),
    )
        .into_response()
}

fn state_cookie(ctx: &Ctx, value: &str, max_age: i64) -> String {
    let secure = if ctx.state.sessions.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{STATE_COOKIE}={value}; Path=/portal/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    )
}

/// Where the provider sends the browser back: the configured base, else this request's host.
fn redirect_uri(ctx: &Ctx, headers: &HeaderMap, id: &str) -> Result<String, Refused> {
    let base = match &ctx.state.oidc.redirect_base {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                        })
                })
                .ok_or_else(|| Refused::Failed("the request has no usable Host header".into()))?;
            let scheme = if ctx.state.sessions.secure_cookie {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        }
    };
    Ok(format!("{base}/portal/oidc/{id}/callback"))
}

async fn start(ctx: Ctx, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let redirect = match redirect_uri(&ctx, &headers, &id) {
        Ok(r) => r,
        Err(e) => return refused(&ctx, e),
    };
    match ctx.state.oidc.start(&id, redirect).await {
        Ok((url, state)) => (
            [(
                header::SET_COOKIE,
                state_cookie(&ctx, &state, crate::oidc::PENDING_TTL.as_secs() as i64),
            )],
            Redirect::to(&url),
        )
            .into_response(),
        Err(e) => refused(&ctx, e),
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Callback>,
) -> Response {
    if let Some(e) = &q.error {
        let why = q.error_description.as_deref().unwrap_or(e);
        let why: String = why.chars().filter(|c| !c.is_control()).take(300).collect();
        return refused(
            &ctx,
            Refused::Failed(format!("the identity provider said: {why}")),
        );
    }
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return refused(
            &ctx,
            Refused::Failed("the provider's answer has no code and state; start again".into()),
        );
    };
    // The state must be the one this browser was given at the start (login CSRF).
    if super::cookie(&headers, STATE_COOKIE) != Some(state) || code.len() > 2048 {
        return refused(
            &ctx,
            Refused::Failed(
                "this sign-in was not started in this browser, or it was already used; start again"
                    .into(),
            ),
        );
    }
    let redirect = match redirect_uri(&ctx, &headers, &id) {
        Ok(r) => r,
        Err(e) => return refused(&ctx, e),
    };
    let s = &ctx.state;
    let (issuer, claims) = match s
        .oidc
        .finish(&id, state, code, redirect, s.clock.now_ms())
        .await
    {
        Ok(v) => v,
        Err(e) => return refused(&ctx, e),
    };
    let user = match crate::oidc::account(s, issuer, &claims, "portal").await {
        Ok(u) => u,
        Err(e) => return refused(&ctx, e),
    };
    match open_session(s, &user).await {
        // Two cookies: appended, as an array of headers would keep only the last.
        Some(sid) => (
            AppendHeaders([
                (
                    header::SET_COOKIE,
                    session_cookie(
                        &sid,
                        s.sessions.session_absolute.as_secs() as i64,
                        s.sessions.secure_cookie,
                    ),
                ),
                (header::SET_COOKIE, state_cookie(&ctx, "", 0)),
            ]),
            // A navigation this site starts, so that the Strict cookie goes with it.
            Html(
                "<!doctype html><html><head><meta charset=\"utf-8\">\
                 <meta http-equiv=\"refresh\" content=\"0;url=/portal\"><title>Haneul</title></head>\
                 <body><p><a href=\"/portal\" id=\"continue\">Continue to the portal</a></p></body></html>",
            ),
        )
            .into_response(),
        None => refused(
            &ctx,
            Refused::Failed("could not open a session; try again".into()),
        ),
    }
}

/// A session for `user`, on a token of its own that ends with the session.
async fn open_session(s: &AppState, user: &haneul_store::UserRecord) -> Option<String> {
    let now = s.clock.now_ms();
    let end = now + s.sessions.session_absolute.as_millis() as i64;
    let secret = crate::routes::new_secret();
    let token = s
        .store
        .create_token(
            &haneul_store::Actor::user(user),
            user.id,
            "portal-oidc",
            &haneul_store::hash_token(&secret),
            Some(end),
            now,
        )
        .await
        .ok()?;
    let id = crate::routes::new_secret();
    s.store
        .create_session(&session_hash(&id), user.id, token.id, end, now)
        .await
        .ok()?;
    Some(id)
}
