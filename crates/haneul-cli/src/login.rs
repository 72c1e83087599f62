//! `haneul login` and `haneul logout`: signing in with an institution's identity provider from
//! the terminal (docs/oidc.md).
//!
//! `login` runs the OAuth device authorisation flow (RFC 8628) against the provider the server
//! names (`GET /v1/auth/oidc`): it prints a URL and a code, and polls until the person has
//! signed in there. The ID token it gets is swapped at the server (`POST /v1/auth/oidc/token`,
//! which checks it) for a Haneul token of an hour. That token and the provider's refresh token
//! are kept in `login.json` beside the client config, readable by the owner only; a command
//! that finds the token near its end refreshes it silently. `logout` revokes both.
//! Tokens made by operators (`--token-file`, HANEUL_TOKEN) are unaffected and take precedence.

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A token with less than this left is refreshed before use.
const REFRESH_BEFORE_MS: i64 = 5 * 60 * 1000;

#[derive(Args)]
pub struct LoginArgs {
    /// The identity provider's id (`haneul login --list` shows them); default: the only one
    /// that offers terminal sign-in.
    #[arg(long)]
    issuer: Option<String>,
    /// List the identity providers the server offers and exit.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    conn: crate::client::Conn,
}

#[derive(Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    conn: crate::client::Conn,
}

/// What `haneul login` keeps (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub server: String,
    pub issuer: String,
    pub client_id: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub token: String,
    pub token_id: i64,
    pub expires_at: i64,
    pub refresh_token: Option<String>,
    pub user: String,
}

#[derive(Deserialize)]
struct IssuerInfo {
    id: String,
    name: String,
    issuer: String,
    cli_client_id: Option<String>,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Exchanged {
    token: String,
    token_id: i64,
    expires_at: i64,
    user: String,
}

/// `login.json` beside the client config.
pub fn state_path() -> anyhow::Result<PathBuf> {
    let config = crate::client::config_path()?;
    Ok(config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("login.json"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot make an HTTP client")
}

fn write_state(path: &Path, s: &LoginState) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(s)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_state(path: &Path) -> anyhow::Result<Option<LoginState>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| {
            format!(
                "{} is damaged: delete it and run `haneul login`",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A client of the server without a token (inside a runtime, where reqwest expects to be).
fn anonymous(server: &str, ca_file: Option<PathBuf>) -> anyhow::Result<haneul_client::Client> {
    haneul_client::Client::new(&haneul_client::Options {
        servers: server.to_string(),
        token: String::new(),
        ca_file,
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn exchange(
    api: &haneul_client::Client,
    issuer: &str,
    id_token: &str,
) -> anyhow::Result<Exchanged> {
    api.call(
        haneul_client::Method::POST,
        "/v1/auth/oidc/token",
        Some(&serde_json::json!({"issuer": issuer, "id_token": id_token})),
        &haneul_client::Retry::never(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("the server refused the sign-in: {e}"))
}

pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let (server, ca_file) = args.conn.server_and_ca()?;
    let rt = runtime()?;
    rt.block_on(async move {
        let api = anonymous(&server, ca_file)?;
        let issuers: Vec<IssuerInfo> = api
            .call::<(), _>(
                haneul_client::Method::GET,
                "/v1/auth/oidc",
                None,
                &haneul_client::Retry::times(3),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot ask {server} for its identity providers: {e}"))?;
        if args.list {
            for i in &issuers {
                let cli = if i.cli_client_id.is_some() { "" } else { " (portal only)" };
                println!("{}\t{}\t{}{cli}", i.id, i.name, i.issuer);
            }
            return Ok(());
        }
        let usable: Vec<&IssuerInfo> =
            issuers.iter().filter(|i| i.cli_client_id.is_some()).collect();
        let issuer = match &args.issuer {
            Some(id) => usable.iter().find(|i| &i.id == id).copied().with_context(|| {
                format!(
                    "--issuer `{id}`: the server offers no terminal sign-in with it; \
                     `haneul login --list` shows those it has"
                )
            })?,
            None => match usable.as_slice() {
                [one] => *one,
                [] => bail!("{server} offers no sign-in from the terminal; use a token from your administrator"),
                _ => bail!(
                    "the server offers several identity providers: choose one with --issuer ({})",
                    usable.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            },
        };
        let client_id = issuer.cli_client_id.clone().unwrap_or_default();
        let http = http()?;
        let disc: Discovery = http
            .get(format!(
                "{}/.well-known/openid-configuration",
                issuer.issuer.trim_end_matches('/')
            ))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("cannot reach the identity provider {}", issuer.issuer))?
            .json()
            .await
            .context("the identity provider's discovery document is not valid")?;
        let device_url = disc.device_authorization_endpoint.clone().with_context(|| {
            format!("{} offers no device sign-in (no device_authorization_endpoint)", issuer.name)
        })?;
        let mut scope = vec!["openid".to_string(), "offline_access".to_string()];
        scope.extend(issuer.scopes.iter().cloned());
        let device: DeviceAnswer = http
            .post(&device_url)
            .form(&[("client_id", client_id.as_str()), ("scope", &scope.join(" "))])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("{} refused to start a device sign-in", issuer.name))?
            .json()
            .await
            .context("the identity provider's device answer is not valid")?;
        println!(
            "To sign in with {}, open {} and enter the code {}",
            issuer.name, device.verification_uri, device.user_code
        );
        if let Some(u) = &device.verification_uri_complete {
            println!("(or open {u})");
        }
        let mut interval = Duration::from_secs(device.interval.unwrap_or(5).max(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(device.expires_in);
        let answer = loop {
            if std::time::Instant::now() > deadline {
                bail!("the code expired before the sign-in; run `haneul login` again");
            }
            tokio::time::sleep(interval).await;
            let a: TokenAnswer = http
                .post(&disc.token_endpoint)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", device.device_code.as_str()),
                    ("client_id", client_id.as_str()),
                ])
                .send()
                .await
                .context("cannot reach the identity provider's token endpoint")?
                .json()
                .await
                .context("the identity provider's token answer is not valid")?;
            match a.error.as_deref() {
                None => break a,
                Some("authorization_pending") => continue,
                Some("slow_down") => interval += Duration::from_secs(5),
                Some(e) => bail!(
                    "the identity provider ended the sign-in: {e}{}",
                    a.error_description.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            }
        };
        let id_token = answer.id_token.context("the identity provider sent no ID token")?;
        let got = exchange(&api, &issuer.id, &id_token).await?;
        let state = LoginState {
            server: server.clone(),
            issuer: issuer.id.clone(),
            client_id,
            token_endpoint: disc.token_endpoint,
            revocation_endpoint: disc.revocation_endpoint,
            token: got.token,
            token_id: got.token_id,
            expires_at: got.expires_at,
            refresh_token: answer.refresh_token,
            user: got.user.clone(),
        };
        let path = state_path()?;
        write_state(&path, &state)?;
        println!("signed in as {} (kept in {})", got.user, path.display());
        Ok(())
    })
}

/// The token of `haneul login`, refreshed first when it ends within five minutes.
pub fn current_token(server: &str, ca_file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let path = state_path()?;
    let Some(mut state) = read_state(&path)? else {
        return Ok(None);
    };
    if state.server != server {
        return Ok(None);
    }
    if state.expires_at - now_ms() > REFRESH_BEFORE_MS {
        return Ok(Some(state.token));
    }
    let Some(refresh) = state.refresh_token.clone() else {
        bail!("your sign-in has ended; run `haneul login`");
    };
    let rt = runtime()?;
    rt.block_on(async {
        let api = anonymous(server, ca_file)?;
        let a: TokenAnswer = http()?
            .post(&state.token_endpoint)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", state.client_id.as_str()),
            ])
            .send()
            .await
            .context("cannot reach the identity provider to refresh your sign-in")?
            .json()
            .await
            .context("the identity provider's token answer is not valid")?;
        let Some(id_token) = a.id_token else {
            bail!(
                "your sign-in has ended ({}); run `haneul login`",
                a.error.unwrap_or_else(|| "no ID token".into())
            );
        };
        let got = exchange(&api, &state.issuer, &id_token).await?;
        state.token = got.token;
        state.token_id = got.token_id;
        state.expires_at = got.expires_at;
        if a.refresh_token.is_some() {
            state.refresh_token = a.refresh_token;
        }
        write_state(&path, &state)?;
        Ok(Some(state.token.clone()))
    })
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let path = state_path()?;
    let Some(state) = read_state(&path)? else {
        println!("not signed in");
        return Ok(());
    };
    let (_, ca_file) = args.conn.server_and_ca()?;
    let rt = runtime()?;
    rt.block_on(async {
        let api = haneul_client::Client::new(&haneul_client::Options {
            servers: state.server.clone(),
            token: state.token.clone(),
            ca_file,
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Revoke at the server first: a token that expired already needs no revoking.
        match api
            .call::<(), serde_json::Value>(
                haneul_client::Method::DELETE,
                &format!("/v1/tokens/{}", state.token_id),
                None,
                &haneul_client::Retry::never(),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if state.expires_at <= now_ms() => {
                tracing::debug!(error = %e, "token already ended");
            }
            Err(e) => bail!("the server did not revoke your token: {e}"),
        }
        if let (Some(url), Some(rt)) = (&state.revocation_endpoint, &state.refresh_token) {
            let r = http()?
                .post(url)
                .form(&[
                    ("token", rt.as_str()),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", state.client_id.as_str()),
                ])
                .send()
                .await;
            if !r.as_ref().is_ok_and(|r| r.status().is_success()) {
                eprintln!(
                    "warning: the identity provider did not confirm revoking the refresh token"
                );
            }
        }
        Ok(())
    })?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("signed out {}", state.user);
    Ok(())
}
