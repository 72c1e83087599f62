//! Sign-in with an institution's identity provider (OpenID Connect; docs/oidc.md).
//!
//! This module owns the configured issuers (`oidc.toml` or `haneul server --oidc-issuer`),
//! their discovery documents and signing keys (cached, fetched again when an ID token names a
//! key the cache lacks, at most once per [`JWKS_REFETCH_INTERVAL`] per issuer), ID token
//! checks (signature, issuer, audience, expiry and, for the portal's code flow, the nonce) done
//! by the `openidconnect` crate, and accounts from claims: an approved link from (issuer,
//! subject) signs in; a first sign-in whose claims match a mapping rule creates the user in
//! that rule's organisation, pending until an administrator approves unless the rule approves
//! at once; claims that match no rule get no account. The portal's pages (start, callback) are
//! in `portal`; the CLI's token exchange (`POST /v1/auth/oidc/token`) is here.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use haneul_api::ErrorBody;
use haneul_store::{Actor, NewOidcUser, NewUser, Role, StoreError, UserRecord};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, ClientId, ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IdTokenClaims, IdTokenFields, IdTokenVerifier, IssuerUrl,
    Nonce, StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Discovery documents and keys are fetched again after this long in any case.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// An ID token naming an unknown key makes the issuer's keys be fetched again at most this
/// often, so that tokens with made-up key ids cannot make the server hammer the provider.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// A portal sign-in must come back from the provider within this long.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sign-ins started and not yet back, at most (older ones are dropped first).
const PENDING_MAX: usize = 10_000;
/// How long a token minted for `haneul login` lasts; the CLI refreshes it before then.
pub const CLI_TOKEN_TTL: Duration = Duration::from_secs(3600);
const MAX_ID_TOKEN: usize = 16 * 1024;

/// Every claim of an ID token beyond the standard ones, kept as JSON: the mapping rules name
/// the organisation and groups claims, whatever a provider calls them.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct OtherClaims(pub BTreeMap<String, serde_json::Value>);
impl AdditionalClaims for OtherClaims {}

type Claims = IdTokenClaims<OtherClaims, CoreGenderClaim>;
type Fields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResponse = StandardTokenResponse<Fields, CoreTokenType>;
type OidcIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// A client of one issuer, as made from its discovery document.
pub type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

// --- configuration ---

/// `oidc.toml`: the issuers people may sign in with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The base URL browsers reach the portal at (`https://haneul.example:8470`); the
    /// callback `BASE/portal/oidc/ID/callback` must be registered at each issuer. Default:
    /// `--advertise-url`, else the request's own host.
    #[serde(default)]
    pub redirect_base: Option<String>,
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

/// One identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name in URLs: lowercase letters, digits and `-`.
    pub id: String,
    /// Shown on the button: "Sign in with NAME".
    pub name: String,
    /// The issuer URL (`iss`); `URL/.well-known/openid-configuration` must answer.
    pub url: String,
    /// The portal's (confidential) client.
    pub client_id: String,
    /// File holding the client secret (one line).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The secret, read from `client_secret_file`.
    #[serde(skip)]
    pub client_secret: Option<String>,
    /// The public client `haneul login` uses for the device flow; `None`: no CLI sign-in.
    #[serde(default)]
    pub cli_client_id: Option<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim holding the person's groups (a list of strings).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claims to organisation and role, the first matching rule wins.
    #[serde(default, rename = "map")]
    pub rules: Vec<MapRule>,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}

/// One mapping rule: every condition given must hold (at least one must be given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    /// The verified email's domain, e.g. `snu.ac.kr` (`email_verified` must be true).
    #[serde(default)]
    pub email_domain: Option<String>,
    /// A claim (e.g. `org`) whose value must be `value` (or a list containing it).
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    /// A group the person must be in (the issuer's `groups_claim`).
    #[serde(default)]
    pub group: Option<String>,
    /// The Haneul organisation (by name) the account is made in.
    pub org: String,
    /// `member` (default) or `org-admin`.
    #[serde(default = "default_role")]
    pub role: String,
    /// Approve the account at once rather than leave it pending for an administrator.
    #[serde(default)]
    pub approve: bool,
}

fn default_role() -> String {
    "member".into()
}

fn bad(what: impl Into<String>) -> crate::ServerError {
    crate::ServerError::Oidc(what.into())
}

impl OidcConfig {
    /// Reads and checks `path` (the client secrets' files included).
    pub fn load(path: &Path) -> Result<Self, crate::ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::ServerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mut cfg: OidcConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| bad(format!("{}: {}: {}", path.display(), e.path(), e.inner())))?;
        cfg.read_secrets()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads each issuer's `client_secret_file` that is not read yet.
    pub fn read_secrets(&mut self) -> Result<(), crate::ServerError> {
        for i in &mut self.issuers {
            if i.client_secret.is_some() {
                continue;
            }
            let Some(f) = &i.client_secret_file else {
                continue;
            };
            let s = std::fs::read_to_string(f).map_err(|e| {
                bad(format!(
                    "issuer `{}`: client_secret_file {}: {e}",
                    i.id,
                    f.display()
                ))
            })?;
            let s = s.trim();
            if s.is_empty() || s.chars().any(char::is_control) {
                return Err(bad(format!(
                    "issuer `{}`: client_secret_file {} must hold the secret on one line",
                    i.id,
                    f.display()
                )));
            }
            i.client_secret = Some(s.to_string());
        }
        Ok(())
    }

    /// Checks ids, URLs and rules, naming the issuer and field at fault.
    pub fn validate(&self) -> Result<(), crate::ServerError> {
        if let Some(b) = &self.redirect_base {
            check_url("redirect_base", b)?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for i in &self.issuers {
            let id_ok = !i.id.is_empty()
                && i.id.len() <= 32
                && i.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !id_ok {
                return Err(bad(format!(
                    "issuer id `{}`: use 1 to 32 lowercase letters, digits and `-`",
                    i.id
                )));
            }
            if !ids.insert(i.id.clone()) {
                return Err(bad(format!("issuer id `{}` is given twice", i.id)));
            }
            let n = i.name.chars().count();
            if n == 0 || n > 100 || i.name.chars().any(char::is_control) {
                return Err(bad(format!(
                    "issuer `{}`: name must be 1 to 100 printable characters",
                    i.id
                )));
            }
            check_url(&format!("issuer `{}`: url", i.id), &i.url)?;
            for (field, v) in [
                ("client_id", Some(&i.client_id)),
                ("cli_client_id", i.cli_client_id.as_ref()),
            ] {
                if let Some(v) = v
                    && (v.is_empty() || v.len() > 200 || v.chars().any(char::is_control))
                {
                    return Err(bad(format!(
                        "issuer `{}`: {field} must be 1 to 200 printable characters",
                        i.id
                    )));
                }
            }
            for (k, r) in i.rules.iter().enumerate() {
                let at = format!("issuer `{}`: map rule {}", i.id, k + 1);
                if r.email_domain.is_none() && r.claim.is_none() && r.group.is_none() {
                    return Err(bad(format!(
                        "{at}: give at least one of email_domain, claim (with value) or group"
                    )));
                }
                if r.claim.is_some() != r.value.is_some() {
                    return Err(bad(format!("{at}: claim and value go together")));
                }
                if !matches!(r.role.as_str(), "member" | "org-admin") {
                    return Err(bad(format!(
                        "{at}: role `{}`: use `member` or `org-admin`",
                        r.role
                    )));
                }
                if r.org.is_empty() {
                    return Err(bad(format!("{at}: org must name an organisation")));
                }
            }
        }
        Ok(())
    }
}

fn check_url(field: &str, u: &str) -> Result<(), crate::ServerError> {
    match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "https" | "http") && p.host().is_some() => Ok(()),
        _ => Err(bad(format!(
            "{field}: `{u}` is not an http(s) URL such as https://idp.example.ac.kr"
        ))),
    }
}

// --- issuers at run time ---

struct Discovered {
    meta: CoreProviderMetadata,
    at: Instant,
}

/// One configured issuer with its cached discovery document and keys.
pub struct Issuer {
    pub cfg: IssuerConfig,
    cache: tokio::sync::Mutex<Option<Discovered>>,
    last_refetch: Mutex<Option<Instant>>,
}

/// A portal sign-in on its way through the provider.
struct Pending {
    issuer: String,
    nonce: Nonce,
    verifier: openidconnect::PkceCodeVerifier,
    at: Instant,
}

/// The issuers and the sign-ins in flight.
#[derive(Default)]
pub struct Oidc {
    pub issuers: Vec<Issuer>,
    pub redirect_base: Option<String>,
    http: Option<reqwest::Client>,
    pending: Mutex<BTreeMap<String, Pending>>,
}

/// Why a sign-in did not go through, as the portal page or the API answer says it.
#[derive(Debug)]
pub enum Refused {
    /// The provider, the token or the exchange failed.
    Failed(String),
    /// The claims match no rule: no account.
    NoMapping(String),
    /// The account exists and waits for its administrator.
    Pending(String),
}

impl Refused {
    pub fn message(&self) -> &str {
        match self {
            Refused::Failed(m) | Refused::NoMapping(m) | Refused::Pending(m) => m,
        }
    }
}

impl Oidc {
    /// The issuers of `cfg`; their providers are first asked when someone signs in.
    pub fn new(cfg: OidcConfig) -> Result<Self, crate::ServerError> {
        cfg.validate()?;
        let http = reqwest::Client::builder()
            // Never follow a provider's redirect (SSRF), as openidconnect advises.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(format!("http client: {e}")))?;
        Ok(Oidc {
            issuers: cfg
                .issuers
                .into_iter()
                .map(|cfg| Issuer {
                    cfg,
                    cache: tokio::sync::Mutex::new(None),
                    last_refetch: Mutex::new(None),
                })
                .collect(),
            redirect_base: cfg.redirect_base,
            http: Some(http),
            pending: Mutex::default(),
        })
    }

    pub fn issuer(&self, id: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| i.cfg.id == id)
    }

    fn http(&self) -> Result<&reqwest::Client, Refused> {
        self.http
            .as_ref()
            .ok_or_else(|| Refused::Failed("no identity provider is configured".into()))
    }

    /// The issuer's discovery document, fetched when missing, stale or (`refetch`) when its
    /// keys lack one a token names.
    async fn metadata(&self, i: &Issuer, refetch: bool) -> Result<CoreProviderMetadata, Refused> {
        let mut cache = i.cache.lock().await;
        if let Some(d) = cache.as_ref()
            && !refetch
            && d.at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.meta.clone());
        }
        let url = IssuerUrl::new(i.cfg.url.clone())
            .map_err(|e| Refused::Failed(format!("issuer `{}`: url: {e}", i.cfg.id)))?;
        let meta = CoreProviderMetadata::discover_async(url, self.http()?)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %i.cfg.id, error = %e, "oidc discovery failed");
                Refused::Failed(format!(
                    "cannot reach the identity provider `{}` ({}); try again later",
                    i.cfg.name,
                    error_chain(&e)
                ))
            })?;
        *cache = Some(Discovered {
            meta: meta.clone(),
            at: Instant::now(),
        });
        Ok(meta)
    }

    /// May the keys be fetched again now (an unknown key id)? Counts the attempt.
    fn may_refetch(i: &Issuer) -> bool {
        let Ok(mut last) = i.last_refetch.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn client(&self, i: &Issuer, meta: CoreProviderMetadata, redirect: Option<String>) -> Client {
        let mut c = openidconnect::Client::from_provider_metadata(
            meta,
            ClientId::new(i.cfg.client_id.clone()),
            i.cfg.client_secret.clone().map(ClientSecret::new),
        );
        if let Some(r) = redirect.and_then(|r| openidconnect::RedirectUrl::new(r).ok()) {
            c = c.set_redirect_uri(r);
        }
        c
    }

    /// Starts a portal sign-in: the provider's authorisation URL (code flow with PKCE and a
    /// nonce) and the state the callback must bring back.
    pub async fn start(&self, id: &str, redirect: String) -> Result<(String, String), Refused> {
        let i = self
            .issuer(id)
            .ok_or_else(|| Refused::Failed(format!("no identity provider `{id}` here")))?;
        let meta = self.metadata(i, false).await?;
        let client = self.client(i, meta, Some(redirect));
        let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            openidconnect::core::CoreAuthenticationFlow::AuthorizationCode,
            openidconnect::CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &i.cfg.scopes {
            req = req.add_scope(openidconnect::Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|_, v| v.at.elapsed() < PENDING_TTL);
            if p.len() >= PENDING_MAX
                && let Some(oldest) = p.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| k.clone())
            {
                p.remove(&oldest);
            }
            p.insert(
                state.secret().clone(),
                Pending {
                    issuer: id.to_string(),
                    nonce,
                    verifier,
                    at: Instant::now(),
                },
            );
        }
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes a portal sign-in: the code exchanged (with the PKCE verifier) and the ID
    /// token checked, nonce included. Returns the issuer and the verified claims.
    pub async fn finish(
        &self,
        id: &str,
        state: &str,
        code: &str,
        redirect: String,
        now_ms: i64,
    ) -> Result<(&Issuer, Claims), Refused> {
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(state))
            .filter(|p| p.at.elapsed() < PENDING_TTL && p.issuer == id)
            .ok_or_else(|| {
                Refused::Failed(
                    "this sign-in is unknown or took longer than 10 minutes; start again".into(),
                )
            })?;
        let i = self
            .issuer(id)
            .ok_or_else(|| Refused::Failed(format!("no identity provider `{id}` here")))?;
        let meta = self.metadata(i, false).await?;
        let client = self.client(i, meta, Some(redirect));
        let answer = client
            .exchange_code(openidconnect::AuthorizationCode::new(code.to_string()))
            .map_err(|e| Refused::Failed(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(pending.verifier)
            .request_async(self.http()?)
            .await
            .map_err(|e| {
                Refused::Failed(format!(
                    "the identity provider refused the sign-in code ({})",
                    error_chain(&e)
                ))
            })?;
        let token = openidconnect::TokenResponse::id_token(&answer)
            .ok_or_else(|| Refused::Failed("the provider sent no ID token".into()))?
            .clone();
        let nonce = pending.nonce;
        let claims = self.verify(i, &token, now_ms, Some(&nonce), false).await?;
        Ok((i, claims))
    }

    /// Checks an ID token sent by `haneul login` (audience: the issuer's CLI client).
    pub async fn verify_cli_token(
        &self,
        id: &str,
        id_token: &str,
        now_ms: i64,
    ) -> Result<(&Issuer, Claims), Refused> {
        let i = self
            .issuer(id)
            .ok_or_else(|| Refused::Failed(format!("no identity provider `{id}` here")))?;
        if i.cfg.cli_client_id.is_none() {
            return Err(Refused::Failed(format!(
                "identity provider `{id}` has no cli_client_id: sign in on the portal"
            )));
        }
        if id_token.len() > MAX_ID_TOKEN {
            return Err(Refused::Failed("id_token is too long".into()));
        }
        let token: OidcIdToken =
            serde_json::from_value(serde_json::Value::String(id_token.to_string()))
                .map_err(|e| Refused::Failed(format!("id_token is not a JWT: {e}")))?;
        let claims = self.verify(i, &token, now_ms, None, true).await?;
        Ok((i, claims))
    }

    /// Verifies `token` against the issuer's keys, fetching them again once (rate-limited)
    /// when the token names a key the cache lacks.
    async fn verify(
        &self,
        i: &Issuer,
        token: &OidcIdToken,
        now_ms: i64,
        nonce: Option<&Nonce>,
        cli: bool,
    ) -> Result<Claims, Refused> {
        let mut refetch = false;
        loop {
            let meta = self.metadata(i, refetch).await?;
            let issuer = meta.issuer().clone();
            let algs = meta.id_token_signing_alg_values_supported().to_vec();
            let keys = meta.jwks().clone();
            let verifier: IdTokenVerifier<CoreJsonWebKey> = if cli {
                let cid = i.cfg.cli_client_id.clone().unwrap_or_default();
                IdTokenVerifier::new_public_client(ClientId::new(cid), issuer, keys)
            } else {
                match &i.cfg.client_secret {
                    Some(s) => IdTokenVerifier::new_confidential_client(
                        ClientId::new(i.cfg.client_id.clone()),
                        ClientSecret::new(s.clone()),
                        issuer,
                        keys,
                    ),
                    None => IdTokenVerifier::new_public_client(
                        ClientId::new(i.cfg.client_id.clone()),
                        issuer,
                        keys,
                    ),
                }
            };
            let verifier = verifier
                .set_allowed_algs(algs)
                .set_time_fn(move || chrono_from_ms(now_ms));
            let result = match nonce {
                Some(n) => token.claims(&verifier, n).cloned(),
                // The device flow has no nonce: there is no browser session to bind.
                None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())).cloned(),
            };
            match result {
                Ok(c) => return Ok(c),
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) if !refetch && Self::may_refetch(i) => {
                    tracing::info!(issuer = %i.cfg.id, "id token names an unknown key; fetching the keys again");
                    refetch = true;
                }
                Err(openidconnect::ClaimsVerificationError::Expired(_)) => {
                    return Err(Refused::Failed(
                        "the ID token has expired; sign in again".into(),
                    ));
                }
                Err(e) => {
                    return Err(Refused::Failed(format!(
                        "the ID token does not verify: {e}"
                    )));
                }
            }
        }
    }
}

/// The server's clock as the verifier reads it (expiry is judged by the server's time).
fn chrono_from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

// --- accounts from claims ---

/// What the claims say about the person, for the rules and the account.
struct Person {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    username: Option<String>,
    other: BTreeMap<String, serde_json::Value>,
}

impl Person {
    fn of(c: &Claims) -> Self {
        Person {
            subject: c.subject().as_str().to_string(),
            email: c.email().map(|e| e.as_str().to_ascii_lowercase()),
            email_verified: c.email_verified().unwrap_or(false),
            username: c.preferred_username().map(|u| u.as_str().to_string()),
            other: c.additional_claims().0.clone(),
        }
    }

    fn domain(&self) -> Option<&str> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified)
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d)
    }

    fn claim_has(&self, claim: &str, want: &str) -> bool {
        match self.other.get(claim) {
            Some(serde_json::Value::String(s)) => s == want,
            Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
            _ => false,
        }
    }
}

/// The first rule the person matches.
fn matching_rule<'a>(i: &'a IssuerConfig, p: &Person) -> Option<&'a MapRule> {
    i.rules.iter().find(|r| {
        r.email_domain
            .as_deref()
            .is_none_or(|d| p.domain().is_some_and(|have| have.eq_ignore_ascii_case(d)))
            && match (&r.claim, &r.value) {
                (Some(c), Some(v)) => p.claim_has(c, v),
                _ => true,
            }
            && r.group
                .as_deref()
                .is_none_or(|g| p.claim_has(&i.groups_claim, g))
    })
}

/// A user name from the claims: the preferred username or the email's local part, lowercase
/// letters, digits, `.`, `_` and `-` only, at most 48 characters.
fn base_name(p: &Person) -> String {
    let raw = p
        .username
        .clone()
        .or_else(|| {
            p.email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .map(String::from)
        })
        .unwrap_or_else(|| "user".into());
    let mut s: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    if s.trim_matches('-').is_empty() {
        s = "user".into();
    }
    s
}

/// The user behind verified claims: the linked account if approved; else, for a first
/// sign-in, a new account as the first matching rule says. Every outcome is audited.
pub async fn account(
    s: &AppState,
    i: &Issuer,
    claims: &Claims,
    via: &str,
) -> Result<UserRecord, Refused> {
    let now = s.clock.now_ms();
    let person = Person::of(claims);
    let issuer_url = claims.issuer().as_str().to_string();
    let actor = Actor::system(&format!("oidc:{}", i.cfg.id));
    let detail = |outcome: &str| {
        serde_json::json!({
            "via": via,
            "issuer": issuer_url,
            "subject": person.subject,
            "email": person.email,
            "outcome": outcome,
        })
        .to_string()
    };
    let internal = |e: StoreError| Refused::Failed(format!("the store failed: {e}"));
    let link = s
        .store
        .oidc_link(&issuer_url, &person.subject)
        .await
        .map_err(internal)?;
    let user = match link {
        Some(link) => {
            let user = s.store.get_user(link.user_id).await.map_err(internal)?;
            if link.approved_at.is_none() {
                let _ = s
                    .store
                    .record_audit(
                        &actor,
                        "user.signin.refused",
                        &format!("user/{}", user.id),
                        &detail("pending"),
                        now,
                    )
                    .await;
                return Err(Refused::Pending(format!(
                    "your account `{}` waits for your organisation's administrator to approve it",
                    user.name
                )));
            }
            user
        }
        None => {
            let Some(rule) = matching_rule(&i.cfg, &person) else {
                let _ = s
                    .store
                    .record_audit(
                        &actor,
                        "user.signin.refused",
                        &format!("oidc/{}", i.cfg.id),
                        &detail("no mapping"),
                        now,
                    )
                    .await;
                return Err(Refused::NoMapping(format!(
                    "no account: nothing in what {} says about you (email domain {}) is mapped \
                     to an organisation at this centre; ask the centre's administrators",
                    i.cfg.name,
                    person.domain().unwrap_or("unverified or none")
                )));
            };
            let orgs = s.store.list_orgs().await.map_err(internal)?;
            let Some(org) = orgs.iter().find(|o| o.name == rule.org) else {
                tracing::error!(issuer = %i.cfg.id, org = %rule.org, "oidc map rule names an organisation that does not exist");
                return Err(Refused::NoMapping(format!(
                    "no account: your organisation `{}` is not set up at this centre yet; \
                     ask the centre's administrators",
                    rule.org
                )));
            };
            let role = Role::parse(&rule.role).unwrap_or(Role::Member);
            let base = base_name(&person);
            let mut made = None;
            for n in 1..=20 {
                let name = if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                };
                let new = NewOidcUser {
                    user: NewUser {
                        name,
                        role,
                        org_id: Some(org.id),
                        projects: vec![],
                        uid: None,
                        gid: None,
                        uid_range: s.identity.uid_range,
                    },
                    issuer: issuer_url.clone(),
                    subject: person.subject.clone(),
                    email: person.email.clone(),
                    approved: rule.approve,
                };
                match s.store.provision_oidc_user(&actor, new, now).await {
                    Ok((u, link)) => {
                        made = Some((u, link));
                        break;
                    }
                    Err(StoreError::Conflict { field: "name", .. }) => continue,
                    Err(e) => return Err(internal(e)),
                }
            }
            let Some((user, link)) = made else {
                return Err(Refused::Failed(format!(
                    "no free user name near `{base}`; ask the centre's administrators"
                )));
            };
            if link.approved_at.is_none() {
                return Err(Refused::Pending(format!(
                    "your account `{}` is made in {} and waits for its administrator to \
                     approve it; sign in again once they have",
                    user.name, org.name
                )));
            }
            user
        }
    };
    s.store
        .record_audit(
            &actor,
            "user.signin",
            &format!("user/{}", user.id),
            &detail("signed in"),
            now,
        )
        .await
        .map_err(internal)?;
    Ok(user)
}

// --- the API: issuers for the CLI, the token exchange ---

/// An issuer as `haneul login` needs it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuerInfo {
    pub id: String,
    pub name: String,
    pub issuer: String,
    /// The public client of the device flow.
    pub cli_client_id: Option<String>,
    pub scopes: Vec<String>,
}

/// The API routes of this module, declared in the OpenAPI document like the others.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_issuers))
        .routes(routes!(exchange))
        .routes(routes!(approve))
}

/// The identity providers people may sign in with.
#[utoipa::path(get, path = "/v1/auth/oidc", tag = "access",
    responses((status = 200, body = Vec<IssuerInfo>)))]
pub async fn list_issuers(State(s): State<AppState>) -> Json<Vec<IssuerInfo>> {
    Json(
        s.oidc
            .issuers
            .iter()
            .map(|i| IssuerInfo {
                id: i.cfg.id.clone(),
                name: i.cfg.name.clone(),
                issuer: i.cfg.url.clone(),
                cli_client_id: i.cfg.cli_client_id.clone(),
                scopes: i.cfg.scopes.clone(),
            })
            .collect(),
    )
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenExchange {
    /// The issuer's id (from `GET /v1/auth/oidc`).
    pub issuer: String,
    /// The ID token the provider gave `haneul login`.
    pub id_token: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExchangedToken {
    pub token: String,
    pub token_id: i64,
    pub expires_at: i64,
    pub user: String,
}

/// Swaps a verified ID token of the CLI's client for a short-lived Haneul token.
#[utoipa::path(post, path = "/v1/auth/oidc/token", tag = "access", request_body = TokenExchange,
    responses((status = 200, body = ExchangedToken), (status = "4XX", body = ErrorBody)))]
pub async fn exchange(
    State(s): State<AppState>,
    crate::error::Body(req): crate::error::Body<TokenExchange>,
) -> Result<Json<ExchangedToken>, ApiError> {
    crate::validate::name("issuer", &req.issuer, 32)?;
    let now = s.clock.now_ms();
    let (i, claims) = s
        .oidc
        .verify_cli_token(&req.issuer, &req.id_token, now)
        .await
        .map_err(|e| match e {
            Refused::Failed(m) => ApiError::TokenEnded(m),
            other => ApiError::forbidden(other.message()),
        })?;
    let user = account(&s, i, &claims, "cli")
        .await
        .map_err(|e| ApiError::forbidden(e.message()))?;
    let secret = crate::routes::new_secret();
    let expires_at = now + CLI_TOKEN_TTL.as_millis() as i64;
    let t = s
        .store
        .create_token(
            &Actor::user(&user),
            user.id,
            "cli-oidc",
            &haneul_store::hash_token(&secret),
            Some(expires_at),
            now,
        )
        .await?;
    Ok(Json(ExchangedToken {
        token: secret,
        token_id: t.id,
        expires_at,
        user: user.name,
    }))
}

/// A user who came from an identity provider, as the approval answer shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub user: i64,
    pub name: String,
    pub issuer: String,
    pub email: Option<String>,
    pub approved_at: Option<i64>,
    pub approved_by: Option<String>,
}

/// Lets in a user provisioned from claims and left pending: the administrators of the user's
/// organisation, or a centre administrator.
#[utoipa::path(post, path = "/v1/users/{id}/approve", tag = "access",
    params(("id" = i64, Path, description = "user id", minimum = 1)),
    responses((status = 200, body = Approval), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
pub async fn approve(
    State(s): State<AppState>,
    caller: crate::auth::Caller,
    crate::extract::Id(id): crate::extract::Id,
) -> Result<Json<Approval>, ApiError> {
    caller.person()?;
    let user = s.store.get_user(id).await?;
    // Another organisation's user is answered as one that does not exist.
    if !caller.can_see_user(&user) {
        return Err(ApiError::not_found("user", id));
    }
    if !user.org_id.is_some_and(|o| caller.can_manage_org(o)) {
        return Err(ApiError::forbidden(
            "only an administrator of the user's organisation may approve them",
        ));
    }
    let link = s
        .store
        .approve_oidc_user(&Actor::user(&caller.0), id, s.clock.now_ms())
        .await?;
    Ok(Json(Approval {
        user: id,
        name: user.name,
        issuer: link.issuer,
        email: link.email,
        approved_at: link.approved_at,
        approved_by: link.approved_by,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(rules: &str) -> IssuerConfig {
        let cfg: OidcConfig = toml::from_str(&format!(
            "[[issuer]]\nid = \"uni\"\nname = \"Uni\"\nurl = \"https://idp.uni.example\"\n\
             client_id = \"haneul\"\n{rules}"
        ))
        .unwrap();
        cfg.validate().unwrap();
        cfg.issuers.into_iter().next().unwrap()
    }

    fn person(email: &str, verified: bool, other: serde_json::Value) -> Person {
        Person {
            subject: "s".into(),
            email: Some(email.into()),
            email_verified: verified,
            username: None,
            other: serde_json::from_value(other).unwrap(),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_needs_every_condition() {
        let i = issuer(
            "[[issuer.map]]\nemail_domain = \"uni.example\"\ngroup = \"gpu-admins\"\norg = \"uni\"\nrole = \"org-admin\"\napprove = true\n\
             [[issuer.map]]\nemail_domain = \"uni.example\"\norg = \"uni\"\n\
             [[issuer.map]]\nclaim = \"org\"\nvalue = \"KIST\"\norg = \"kist\"\n",
        );
        let admin = person(
            "a@uni.example",
            true,
            serde_json::json!({"groups": ["gpu-admins"]}),
        );
        assert_eq!(matching_rule(&i, &admin).unwrap().role, "org-admin");
        let member = person("b@Uni.Example", true, serde_json::json!({}));
        let r = matching_rule(&i, &member).unwrap();
        assert_eq!((r.role.as_str(), r.approve), ("member", false));
        // An unverified email proves nothing about the domain.
        assert!(
            matching_rule(&i, &person("c@uni.example", false, serde_json::json!({}))).is_none()
        );
        let kist = person("d@gmail.example", true, serde_json::json!({"org": "KIST"}));
        assert_eq!(matching_rule(&i, &kist).unwrap().org, "kist");
        assert!(
            matching_rule(&i, &person("e@evil.example", true, serde_json::json!({}))).is_none()
        );
    }

    #[test]
    fn bad_configuration_names_the_issuer_and_field() {
        let e = toml::from_str::<OidcConfig>(
            "[[issuer]]\nid = \"Uni\"\nname = \"U\"\nurl = \"https://x\"\nclient_id = \"c\"\n",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("issuer id `Uni`"), "{e}");
        let e = toml::from_str::<OidcConfig>(
            "[[issuer]]\nid = \"u\"\nname = \"U\"\nurl = \"ftp://x\"\nclient_id = \"c\"\n",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("issuer `u`: url"), "{e}");
        let e = toml::from_str::<OidcConfig>(
            "[[issuer]]\nid = \"u\"\nname = \"U\"\nurl = \"https://x\"\nclient_id = \"c\"\n[[issuer.map]]\norg = \"o\"\n",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("map rule 1: give at least one"), "{e}");
    }

    #[test]
    fn user_names_from_claims_are_plain() {
        let mut p = person("Kim.Minji+gpu@uni.example", true, serde_json::json!({}));
        assert_eq!(base_name(&p), "kim.minji-gpu");
        p.username = Some("김민지".into());
        assert_eq!(base_name(&p), "user");
    }
}
