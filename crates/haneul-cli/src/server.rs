//! `haneul server`: runs the control plane until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Args;
use haneul_server::{Bootstrap, Config, Database};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul server --data-dir /var/lib/haneul\n  \
    haneul server --data-dir ./state --listen 127.0.0.1:8470\n  \
    haneul server --data-dir ./state --database postgres://haneul@db/haneul\n  \
    haneul server --data-dir /var/lib/haneul --listen 0.0.0.0:8470 \\\n      \
      --tls-cert /etc/haneul/server.pem --tls-key /etc/haneul/server.key\n\n\
    On SIGHUP the certificate and key are read again (rotation without a restart).")]
pub struct ServerArgs {
    /// Directory for the SQLite database and the administrator token.
    #[arg(long, env = "HANEUL_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to serve the API on.
    #[arg(long, env = "HANEUL_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// PostgreSQL URL (postgres://...) instead of SQLite in the data directory. Several servers
    /// may share one database: one leads, the others stand by.
    #[arg(long, env = "HANEUL_DATABASE")]
    database: Option<String>,
    /// Seconds without a heartbeat after which a node is lost and its jobs requeued.
    #[arg(long, default_value_t = 30)]
    node_timeout: u64,
    /// Seconds a leader's lease lasts; a standby takes over this long after the leader dies.
    #[arg(long, default_value_t = 3)]
    lease_ttl: u64,
    /// The base URL agents and clients reach this server at (https://ctl-a.example:8470). With
    /// several servers, a standby names the leader's URL in every answer and clients move there.
    #[arg(long, env = "HANEUL_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Unix uids given to new users (their primary gid is the same number), FIRST-LAST.
    #[arg(long, default_value = "200000-299999", value_parser = haneul_server::identity::parse_range)]
    uid_range: haneul_server::identity::IdRange,
    /// Unix group ids given to new projects, FIRST-LAST (must not overlap --uid-range).
    #[arg(long, default_value = "300000-399999", value_parser = haneul_server::identity::parse_range)]
    project_gid_range: haneul_server::identity::IdRange,
    /// A registry (or registry/namespace) jobs' container images may come from, e.g.
    /// nvcr.io/nvidia or docker.io/library (repeatable). None: no OCI image is accepted.
    #[arg(long, value_name = "PREFIX")]
    container_registry: Vec<String>,
    /// A directory jobs' root file system (or .sif) images may lie under (repeatable). None:
    /// no path image is accepted.
    #[arg(long, value_name = "DIR")]
    container_rootfs_dir: Vec<PathBuf>,
    /// PEM certificate chain (leaf first) to serve HTTPS with; reloaded on SIGHUP.
    #[arg(long, env = "HANEUL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HANEUL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback. Only behind a TLS-terminating
    /// proxy on a network you trust: tokens and job output cross it in clear text.
    #[arg(long, env = "HANEUL_INSECURE_HTTP", conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// File holding a token that `/metrics` then requires as `Authorization: Bearer`
    /// (Prometheus: `authorization: {credentials_file: ...}`); without it `/metrics` is open.
    #[arg(long, env = "HANEUL_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Days a person's token works when created without `--expires` (agents' tokens never
    /// expire unless given one). 0: no default expiry.
    #[arg(long, default_value_t = 0)]
    token_expiry_days: u64,
    /// Seconds an interactive job (`haneul run --pty`) waits for its owner to attach again
    /// after the connection is lost before it is cancelled.
    #[arg(long, env = "HANEUL_TERMINAL_GRACE", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    terminal_grace: u64,
    /// Minutes a JupyterLab session started from the portal may sit idle (no kernel busy, no
    /// request) before its kernels are culled and it ends, freeing its GPUs.
    #[arg(long, env = "HANEUL_JUPYTER_IDLE", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=10_080))]
    jupyter_idle: u64,
    /// Minutes a portal session lasts without a request.
    #[arg(long, default_value_t = 30)]
    session_idle_minutes: u64,
    /// Hours a portal session lasts at most.
    #[arg(long, default_value_t = 12)]
    session_hours: u64,
    /// Mark the portal's session cookie `Secure` (set this when clients reach the server over
    /// TLS, directly or through a proxy).
    #[arg(long)]
    secure_cookie: bool,
    /// The ed25519 key that signs audit checkpoints (default: DIR/audit.key, made on first
    /// start). Keep it, or a copy of its public half, away from the database's administrators.
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// Where signed audit checkpoints are appended (default: DIR/audit-checkpoints.jsonl).
    #[arg(long)]
    audit_checkpoints: Option<PathBuf>,
    /// Seconds between audit checkpoints (one is written only when the log grew).
    #[arg(long, default_value_t = 60)]
    audit_checkpoint_interval: u64,
    /// Identity providers people sign in with, from a TOML file (docs/oidc.md): several
    /// `[[issuer]]` tables, each with a display name and its claim mapping rules.
    #[arg(long, env = "HANEUL_OIDC_CONFIG")]
    oidc_config: Option<PathBuf>,
    /// One identity provider's issuer URL (besides those of --oidc-config); its accounts
    /// still need mapping rules from --oidc-config to be made.
    #[arg(long, env = "HANEUL_OIDC_ISSUER", requires = "oidc_client_id")]
    oidc_issuer: Option<String>,
    /// The portal's client id at --oidc-issuer.
    #[arg(long, env = "HANEUL_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    oidc_client_id: Option<String>,
    /// File holding the client secret of --oidc-client-id.
    #[arg(long, env = "HANEUL_OIDC_CLIENT_SECRET_FILE", requires = "oidc_issuer")]
    oidc_client_secret_file: Option<PathBuf>,
    /// The name on --oidc-issuer's button ("Sign in with NAME"); default: its host.
    #[arg(long, requires = "oidc_issuer")]
    oidc_name: Option<String>,
    /// A mapping rule for --oidc-issuer, DOMAIN=ORG (repeatable): people whose verified email
    /// is at DOMAIN get a member account in organisation ORG, pending until its administrator
    /// approves. Richer rules (claims, groups, roles): --oidc-config.
    #[arg(long, value_name = "DOMAIN=ORG", requires = "oidc_issuer")]
    oidc_map: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The identity providers of --oidc-config and --oidc-issuer.
fn oidc_config(args: &ServerArgs) -> anyhow::Result<haneul_server::oidc::OidcConfig> {
    let mut cfg = match &args.oidc_config {
        Some(f) => haneul_server::oidc::OidcConfig::load(f)
            .with_context(|| format!("--oidc-config {}", f.display()))?,
        None => haneul_server::oidc::OidcConfig::default(),
    };
    if let (Some(url), Some(client)) = (&args.oidc_issuer, &args.oidc_client_id) {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .with_context(|| {
                format!("--oidc-issuer: `{url}` is not a URL such as https://idp.example.ac.kr")
            })?;
        cfg.issuers.push(haneul_server::oidc::IssuerConfig {
            id: "default".into(),
            name: args.oidc_name.clone().unwrap_or(host),
            url: url.clone(),
            client_id: client.clone(),
            client_secret_file: args.oidc_client_secret_file.clone(),
            client_secret: None,
            cli_client_id: None,
            scopes: vec!["email".into(), "profile".into()],
            groups_claim: "groups".into(),
            rules: args
                .oidc_map
                .iter()
                .map(|m| {
                    let (domain, org) = m
                        .split_once('=')
                        .filter(|(d, o)| !d.is_empty() && !o.is_empty())
                        .with_context(|| {
                            format!("--oidc-map `{m}`: write DOMAIN=ORG, e.g. snu.ac.kr=snu")
                        })?;
                    Ok(haneul_server::oidc::MapRule {
                        email_domain: Some(domain.to_string()),
                        claim: None,
                        value: None,
                        group: None,
                        org: org.to_string(),
                        role: "member".into(),
                        approve: false,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        });
        cfg.read_secrets().context("--oidc-client-secret-file")?;
    }
    cfg.validate().context("identity providers")?;
    Ok(cfg)
}

/// Connection hygiene (docs/server.md, "Connection limits").
#[derive(Args)]
pub struct LimitArgs {
    /// Seconds a client has for the TLS handshake and for each request header (also how long
    /// an HTTP/1.1 keep-alive connection may wait for its next request).
    #[arg(long, env = "HANEUL_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Longest pause in seconds between two pieces of a request body.
    #[arg(long, env = "HANEUL_BODY_TIMEOUT", default_value_t = 30)]
    body_timeout: u64,
    /// Seconds without traffic, and with no request in progress, after which a connection
    /// is closed.
    #[arg(long, env = "HANEUL_IDLE_TIMEOUT", default_value_t = 120)]
    idle_timeout: u64,
    /// Connections served at once; further ones get 503 with Retry-After. Lowered to fit
    /// the process's file limit.
    #[arg(long, env = "HANEUL_MAX_CONNECTIONS", default_value_t = 8192)]
    max_connections: usize,
    /// Writes per second per token (0: no limit); the agent protocol is not limited.
    #[arg(long, env = "HANEUL_WRITE_RATE", default_value_t = 50)]
    write_rate: u32,
    /// Writes a token may burst before --write-rate applies.
    #[arg(long, env = "HANEUL_WRITE_BURST", default_value_t = 500)]
    write_burst: u32,
}

/// Descriptors kept for the database, log files and the like, outside the connection cap.
const FD_RESERVE: u64 = 256;

impl LimitArgs {
    fn to_limits(&self) -> anyhow::Result<haneul_server::serve::Limits> {
        for (name, v) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if v == 0 {
                anyhow::bail!("{name} must be at least 1 second");
            }
        }
        if self.max_connections == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        let files = haneul_server::serve::raise_file_limit();
        let fit = files.saturating_sub(FD_RESERVE).max(16) as usize;
        let max_connections = if self.max_connections > fit {
            tracing::warn!(
                asked = self.max_connections,
                file_limit = files,
                using = fit,
                "--max-connections lowered to fit the file limit (raise LimitNOFILE)"
            );
            fit
        } else {
            self.max_connections
        };
        Ok(haneul_server::serve::Limits {
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_connections,
            writes_per_second: self.write_rate,
            write_burst: self.write_burst,
        })
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Everything the server creates (database, WAL, tokens) is for its own account only.
    // SAFETY: umask has no preconditions.
    unsafe {
        libc::umask(0o077);
    }
    let mut cfg = Config::new(args.data_dir.clone());
    cfg.listen = args.listen;
    cfg.identity = haneul_server::identity::IdentityPolicy {
        uid_range: args.uid_range,
        project_gid_range: args.project_gid_range,
        container_registries: args.container_registry.clone(),
        container_rootfs_dirs: args.container_rootfs_dir.clone(),
    };
    if let Some(url) = &args.database {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            anyhow::bail!("--database: expected a postgres:// URL, got `{url}`");
        }
        cfg.database = Database::Postgres(url.clone());
    }
    if args.node_timeout == 0 || args.lease_ttl == 0 {
        anyhow::bail!("--node-timeout and --lease-ttl must be at least 1 second");
    }
    cfg.node_timeout = Duration::from_secs(args.node_timeout);
    cfg.lease_ttl = Duration::from_secs(args.lease_ttl);
    if let Some(url) = &args.advertise_url {
        match haneul_client::parse_servers(url) {
            Ok(v) if v.len() == 1 => {
                cfg.advertise_url = Some(v[0].as_str().trim_end_matches('/').to_string())
            }
            Ok(_) => anyhow::bail!("--advertise-url: give one URL, not a list: `{url}`"),
            Err(e) => anyhow::bail!("{}", e.to_string().replace("--server", "--advertise-url")),
        }
    }
    cfg.limits = args.limits.to_limits()?;
    cfg.insecure_http = args.insecure_http;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls = Some(haneul_server::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    if args.session_idle_minutes == 0
        || args.session_hours == 0
        || args.audit_checkpoint_interval == 0
    {
        anyhow::bail!(
            "--session-idle-minutes, --session-hours and --audit-checkpoint-interval must be at least 1"
        );
    }
    cfg.sessions.default_token_ttl =
        (args.token_expiry_days > 0).then(|| Duration::from_secs(args.token_expiry_days * 86_400));
    cfg.sessions.session_idle = Duration::from_secs(args.session_idle_minutes * 60);
    cfg.sessions.session_absolute = Duration::from_secs(args.session_hours * 3600);
    cfg.sessions.secure_cookie = args.secure_cookie;
    if let Some(k) = &args.audit_key {
        cfg.anchor.key_file = k.clone();
    }
    if let Some(f) = &args.audit_checkpoints {
        cfg.anchor.checkpoint_file = f.clone();
    }
    cfg.anchor.interval = Duration::from_secs(args.audit_checkpoint_interval);
    cfg.terminal_grace = Duration::from_secs(args.terminal_grace);
    cfg.jupyter_idle = Duration::from_secs(args.jupyter_idle * 60);
    cfg.oidc = oidc_config(&args)?;
    if let Some(f) = &args.metrics_token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("--metrics-token-file: cannot read {}", f.display()))?;
        let t = t.trim();
        if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            anyhow::bail!(
                "--metrics-token-file: {} must hold one token of at least 16 printable characters",
                f.display()
            );
        }
        cfg.metrics_token = Some(t.to_string());
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let mut running = haneul_server::start(cfg.clone())
            .await
            .context("cannot start the server")?;
        match &running.bootstrap {
            Bootstrap::Wrote(p) => println!(
                "wrote a centre-admin token to {} (keep it secret; it is shown nowhere else)",
                p.display()
            ),
            Bootstrap::Present(p) => println!("centre-admin token: {}", p.display()),
            Bootstrap::AlreadyInitialised => println!(
                "the database already has users; no admin token written to {}",
                cfg.data_dir.display()
            ),
        }
        let backend = match &cfg.database {
            Database::Sqlite(p) => format!("sqlite {}", p.display()),
            Database::Postgres(_) => "postgres".to_string(),
        };
        println!(
            "haneul server listening on {scheme}://{} ({backend}); API docs at /docs",
            running.addr
        );
        let signals = running.signals();
        tokio::select! {
            r = running.wait() => r.context("the HTTP server stopped")?,
            _ = shutdown_signal() => {
                println!("stopping");
                signals.shutdown.send_replace(true);
                running.stop().await;
            }
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
