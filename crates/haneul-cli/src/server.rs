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
    haneul server --data-dir ./state --database postgres://haneul@db/haneul")]
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
    /// File holding a token that `/metrics` then requires as `Authorization: Bearer`
    /// (Prometheus: `authorization: {credentials_file: ...}`); without it `/metrics` is open.
    #[arg(long, env = "HANEUL_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Days a person's token works when created without `--expires` (agents' tokens never
    /// expire unless given one). 0: no default expiry.
    #[arg(long, default_value_t = 0)]
    token_expiry_days: u64,
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
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = Config::new(args.data_dir.clone());
    cfg.listen = args.listen;
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
            "haneul server listening on http://{} ({backend}); API docs at /docs",
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
