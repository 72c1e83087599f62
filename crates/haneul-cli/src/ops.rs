//! Operator commands (`project`, `user`, `token`, `pool`, `node`, `audit`): thin clients of the
//! /v1 API. The server decides who may do what; these only shape requests and print answers.

use crate::client::{Api, Conn};
use crate::i18n::{M, t};
use crate::output::{UsageError, print_json, state, stdout_colour, table};
use anyhow::bail;
use clap::{Args, Subcommand};
use haneul_api::{AuditEntry, AuditVerify, Node, Pool, Project, Token, TokenCreated, User};
use serde_json::{Value, json};
use std::path::PathBuf;

fn role_str(r: haneul_api::Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One object: as itself in JSON (like `haneul show`), as a one-row table otherwise.
fn one<T: serde::Serialize>(
    api: &Api,
    item: T,
    table: fn(&Api, &[T]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if api.json {
        return print_json(&item);
    }
    table(api, std::slice::from_ref(&item))
}

fn ids(v: &[i64]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// --- project ---

#[derive(Args)]
#[command(after_help = "Examples:
  haneul project create --org 1 --name climate --quota H200=16 --quota H100=8:32
  haneul project list
  haneul project show 3 --json
  haneul project set-quota 3 --quota H200=32")]
pub struct ProjectArgs {
    #[command(subcommand)]
    cmd: ProjectCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
enum ProjectCmd {
    /// Create a project in an organisation.
    #[command(
        after_help = "Examples:\n  haneul project create --org 1 --name climate --quota H200=16"
    )]
    Create {
        #[arg(long)]
        org: i64,
        #[arg(long)]
        name: String,
        /// Fair-share weight, 1 or more.
        #[arg(long, default_value_t = 1)]
        weight: i64,
        /// MODEL=GPUS[:BORROW_LIMIT]: guaranteed GPUs of a model, and how many in all it may
        /// use by borrowing idle ones (absent: unlimited). Repeat for several models.
        #[arg(long)]
        quota: Vec<String>,
    },
    /// Projects you may see.
    #[command(after_help = "Examples:\n  haneul project list --json")]
    List,
    /// One project and its quotas.
    #[command(after_help = "Examples:\n  haneul project show 3")]
    Show { id: i64 },
    /// Replace a project's quotas (every model not named loses its quota).
    #[command(
        after_help = "Examples:\n  haneul project set-quota 3 --quota H200=32 --quota H100=8:16"
    )]
    SetQuota {
        id: i64,
        #[arg(long, required = true)]
        quota: Vec<String>,
    },
}

/// `H200=8` or `H200=8:16` (GPUs; the wire takes milli-GPU).
pub fn parse_quota(s: &str) -> Result<Value, UsageError> {
    let bad = || UsageError(t(M::BadQuota).arg("value", s).text());
    let (model, rest) = s.split_once('=').ok_or_else(bad)?;
    if model.trim().is_empty() {
        return Err(bad());
    }
    let (g, limit) = match rest.split_once(':') {
        Some((g, l)) => (g, Some(l)),
        None => (rest, None),
    };
    let gpus = |v: &str| -> Result<u64, UsageError> {
        let f: f64 = v.trim().parse().map_err(|_| bad())?;
        if !(0.0..=1e9).contains(&f) {
            return Err(bad());
        }
        Ok((f * 1000.0).round() as u64)
    };
    let mut q = json!({"gpu_model": model.trim(), "guaranteed_milli": gpus(g)?});
    if let Some(l) = limit {
        q["borrow_limit_milli"] = json!(gpus(l)?);
    }
    Ok(q)
}

fn print_projects(api: &Api, ps: &[Project]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&ps);
    }
    let mut t = table(&[
        "ID",
        "ORG",
        "NAME",
        "WEIGHT",
        "QUOTAS (GPUs guaranteed/limit)",
    ]);
    for p in ps {
        let quotas: Vec<String> = p
            .quotas
            .iter()
            .map(|q| {
                let lim = q
                    .borrow_limit_milli
                    .map(|l| format!("{}", l as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into());
                format!(
                    "{}={}/{lim}",
                    q.gpu_model,
                    q.guaranteed_milli as f64 / 1000.0
                )
            })
            .collect();
        t.add_row(vec![
            p.id.to_string(),
            p.org.to_string(),
            p.name.clone(),
            p.weight.to_string(),
            quotas.join(" "),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn project(args: ProjectArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    match args.cmd {
        ProjectCmd::Create {
            org,
            name,
            weight,
            quota,
        } => {
            let quotas = quota
                .iter()
                .map(|q| parse_quota(q))
                .collect::<Result<Vec<_>, _>>()?;
            let p: Project = api.call(
                "POST",
                "/v1/projects",
                Some(json!({"org": org, "name": name, "weight": weight, "quotas": quotas})),
            )?;
            one(&api, p, print_projects)
        }
        ProjectCmd::List => {
            let ps: Vec<Project> = api.call("GET", "/v1/projects", None)?;
            print_projects(&api, &ps)
        }
        ProjectCmd::Show { id } => {
            let p: Project = api.call("GET", &format!("/v1/projects/{id}"), None)?;
            one(&api, p, print_projects)
        }
        ProjectCmd::SetQuota { id, quota } => {
            let quotas = quota
                .iter()
                .map(|q| parse_quota(q))
                .collect::<Result<Vec<_>, _>>()?;
            let p: Project = api.call(
                "PUT",
                &format!("/v1/projects/{id}/quotas"),
                Some(json!({ "quotas": quotas })),
            )?;
            one(&api, p, print_projects)
        }
    }
}

// --- user ---

#[derive(Args)]
#[command(after_help = "Examples:
  haneul user create --name kim --role member --org 1 --project 3
  haneul user create --name ops --role auditor
  haneul user create --name lee --role member --org 1 --project 3 --uid 201234
  haneul user update 7 --uid 205000 --gid 5000
  haneul user list
  haneul user list --pending
  haneul user approve 12
  haneul user show 7 --json")]
pub struct UserArgs {
    #[command(subcommand)]
    cmd: UserCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user (then `haneul token create --user ID` for their token).
    #[command(
        after_help = "Examples:\n  haneul user create --name kim --role member --org 1 --project 3"
    )]
    Create {
        #[arg(long)]
        name: String,
        /// centre-admin, org-admin, member, auditor or agent.
        #[arg(long)]
        role: String,
        /// The organisation (org-admin and member).
        #[arg(long)]
        org: Option<i64>,
        /// A project the member belongs to; repeat for several.
        #[arg(long)]
        project: Vec<i64>,
        /// The Unix uid the user's tasks run as (default: the next of the server's
        /// --uid-range; never 0 or an agent's uid).
        #[arg(long)]
        uid: Option<i64>,
        /// The primary Unix gid (default: equal to the uid).
        #[arg(long)]
        gid: Option<i64>,
    },
    /// Set a user's Unix uid or primary gid (centre administrators).
    #[command(after_help = "Examples:\n  haneul user update 7 --uid 205000 --gid 5000")]
    Update {
        id: i64,
        #[arg(long)]
        uid: Option<i64>,
        #[arg(long)]
        gid: Option<i64>,
    },
    /// Users you may see.
    #[command(after_help = "Examples:\n  haneul user list --json\n  haneul user list --pending")]
    List {
        /// Only people who signed in with their institution and wait for approval.
        #[arg(long)]
        pending: bool,
    },
    /// One user.
    #[command(after_help = "Examples:\n  haneul user show 7")]
    Show { id: i64 },
    /// Let in a person who signed in with their institution and waits for approval
    /// (an administrator of their organisation, or a centre administrator).
    #[command(after_help = "Examples:\n  haneul user list --pending\n  haneul user approve 12")]
    Approve {
        /// The pending user's id (`haneul user list --pending`).
        id: i64,
    },
}

/// The server's answer to an approval (`POST /v1/users/{id}/approve`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Approval {
    user: i64,
    name: String,
    issuer: String,
    email: Option<String>,
    approved_at: Option<i64>,
    approved_by: Option<String>,
}

fn print_users(api: &Api, us: &[User]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&us);
    }
    let mut t = table(&["ID", "NAME", "ROLE", "ORG", "PROJECTS", "UID", "GID"]);
    for u in us {
        t.add_row(vec![
            u.id.to_string(),
            u.name.clone(),
            role_str(u.role),
            u.org.map(|o| o.to_string()).unwrap_or_default(),
            ids(&u.projects),
            u.uid.map(|v| v.to_string()).unwrap_or_default(),
            u.gid.map(|v| v.to_string()).unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn user(args: UserArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    match args.cmd {
        UserCmd::Create {
            name,
            role,
            org,
            project,
            uid,
            gid,
        } => {
            let u: User = api.call(
                "POST",
                "/v1/users",
                Some(
                    json!({"name": name, "role": role, "org": org, "projects": project,
                    "uid": uid, "gid": gid}),
                ),
            )?;
            one(&api, u, print_users)
        }
        UserCmd::Update { id, uid, gid } => {
            if uid.is_none() && gid.is_none() {
                anyhow::bail!("give --uid, --gid or both");
            }
            let u: User = api.call(
                "PATCH",
                &format!("/v1/users/{id}"),
                Some(json!({"uid": uid, "gid": gid})),
            )?;
            one(&api, u, print_users)
        }
        UserCmd::List { pending } => {
            let path = if pending {
                "/v1/users?pending=true"
            } else {
                "/v1/users"
            };
            let us: Vec<User> = api.call("GET", path, None)?;
            print_users(&api, &us)
        }
        UserCmd::Approve { id } => {
            let a: Approval = api.call("POST", &format!("/v1/users/{id}/approve"), None)?;
            if api.json {
                return print_json(&a);
            }
            println!(
                "approved user {} ({}, {} from {})",
                a.user,
                a.name,
                a.email.as_deref().unwrap_or("no email"),
                a.issuer
            );
            Ok(())
        }
        UserCmd::Show { id } => {
            let u: User = api.call("GET", &format!("/v1/users/{id}"), None)?;
            one(&api, u, print_users)
        }
    }
}

// --- token ---

#[derive(Args)]
#[command(after_help = "Examples:
  haneul token create --user 7 --name laptop --out kim.token
  haneul token list
  haneul token revoke 12")]
pub struct TokenArgs {
    #[command(subcommand)]
    cmd: TokenCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Mint a token (for yourself, or for a user you manage). The secret is shown once.
    #[command(
        after_help = "Examples:\n  haneul token create --user 7 --out kim.token\n  haneul token create --expires 90d"
    )]
    Create {
        /// The user it acts as (default: you).
        #[arg(long)]
        user: Option<i64>,
        #[arg(long, default_value = "")]
        name: String,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long the token works: a number with s, m, h or d (`90d`, `12h`). Default: the
        /// server's default for people's tokens; agents' tokens never expire unless given one.
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<i64>,
    },
    /// Your tokens (all tokens for a centre admin); secrets are never shown again.
    #[command(after_help = "Examples:\n  haneul token list --json")]
    List,
    /// Revoke a token: it stops working at once.
    #[command(after_help = "Examples:\n  haneul token revoke 12")]
    Revoke { id: i64 },
}

/// `90d`, `12h`, `30m`, `600s` as seconds.
fn parse_expiry(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}`: give a number with s, m, h or d, for example 90d");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(mul).ok_or_else(bad)
}

fn print_tokens(api: &Api, ts: &[Token]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&ts);
    }
    let mut t = table(&["ID", "USER", "NAME", "CREATED", "REVOKED", "EXPIRES"]);
    for tk in ts {
        t.add_row(vec![
            tk.id.to_string(),
            tk.user.to_string(),
            crate::output::shown(&tk.name),
            tk.created_at.to_string(),
            tk.revoked_at.map(|r| r.to_string()).unwrap_or_default(),
            tk.expires_at.map(|r| r.to_string()).unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}; choose a new path", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(())
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    match args.cmd {
        TokenCmd::Create {
            user,
            name,
            out,
            expires,
        } => {
            // Refuse a path in use before minting, so no secret is made and then lost.
            if let Some(p) = &out
                && p.exists()
            {
                bail!("{} exists; choose a new path for --out", p.display());
            }
            let c: TokenCreated = api.call(
                "POST",
                "/v1/tokens",
                Some(json!({"user": user, "name": name, "expires_in_s": expires})),
            )?;
            if let Some(p) = &out {
                write_secret(p, &c.secret)?;
            }
            if api.json {
                let mut v = serde_json::to_value(&c)?;
                if out.is_some() {
                    v["secret"] = Value::Null;
                }
                return print_json(&v);
            }
            match &out {
                Some(p) => println!(
                    "token {} for user {}: {}",
                    c.token.id,
                    c.token.user,
                    p.display()
                ),
                None => {
                    eprintln!(
                        "{}",
                        t(M::TokenShownOnce)
                            .arg("id", c.token.id)
                            .arg("user", c.token.user)
                    );
                    println!("{}", c.secret);
                }
            }
            Ok(())
        }
        TokenCmd::List => {
            let ts: Vec<Token> = api.call("GET", "/v1/tokens", None)?;
            print_tokens(&api, &ts)
        }
        TokenCmd::Revoke { id } => {
            let tk: Token = api.call("DELETE", &format!("/v1/tokens/{id}"), None)?;
            one(&api, tk, print_tokens)
        }
    }
}

// --- pool ---

#[derive(Args)]
#[command(after_help = "Examples:
  haneul pool create --name partner-a --owner 2 --lending owner-only
  haneul pool list --json")]
pub struct PoolArgs {
    #[command(subcommand)]
    cmd: PoolCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Create a pool of GPUs (nodes join it when their agent registers with `--pool NAME`).
    #[command(after_help = "Examples:\n  haneul pool create --name national")]
    Create {
        #[arg(long)]
        name: String,
        /// The owning organisation.
        #[arg(long)]
        owner: Option<i64>,
        /// open (any project) or owner-only.
        #[arg(long, default_value = "open")]
        lending: String,
    },
    /// All pools.
    #[command(after_help = "Examples:\n  haneul pool list")]
    List,
}

fn print_pools(api: &Api, ps: &[Pool]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&ps);
    }
    let mut t = table(&["ID", "NAME", "OWNER", "LENDING"]);
    for p in ps {
        t.add_row(vec![
            p.id.to_string(),
            p.name.clone(),
            p.owner.map(|o| o.to_string()).unwrap_or_default(),
            p.lending.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn pool(args: PoolArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    match args.cmd {
        PoolCmd::Create {
            name,
            owner,
            lending,
        } => {
            let p: Pool = api.call(
                "POST",
                "/v1/pools",
                Some(json!({"name": name, "owner": owner, "lending": lending})),
            )?;
            one(&api, p, print_pools)
        }
        PoolCmd::List => {
            let ps: Vec<Pool> = api.call("GET", "/v1/pools", None)?;
            print_pools(&api, &ps)
        }
    }
}

// --- node ---

#[derive(Args)]
#[command(after_help = "Examples:
  haneul node list
  haneul node show 4 --json
  haneul node drain 4        (running work finishes; nothing new starts)
  haneul node resume 4")]
pub struct NodeArgs {
    #[command(subcommand)]
    cmd: NodeCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
enum NodeCmd {
    /// All nodes and their state.
    #[command(after_help = "Examples:\n  haneul node list --json")]
    List,
    /// One node.
    #[command(after_help = "Examples:\n  haneul node show 4")]
    Show { id: i64 },
    /// Let running work finish and start nothing new on the node.
    #[command(after_help = "Examples:\n  haneul node drain 4 --reason \"fan replacement\"")]
    Drain {
        id: i64,
        /// Why, kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a drained node back in service.
    #[command(after_help = "Examples:\n  haneul node resume 4")]
    Resume {
        id: i64,
        /// Why, kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn print_nodes(api: &Api, ns: &[Node]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&ns);
    }
    let colour = stdout_colour();
    let mut t = table(&[
        "ID",
        "NAME",
        "POOL",
        "BLOCK",
        "GPUS",
        "STATE",
        "REASON",
        "CONTAINERS",
    ]);
    for n in ns {
        t.add_row(vec![
            n.id.to_string(),
            n.name.clone(),
            n.pool.to_string(),
            n.block.clone(),
            format!("{}x{}", n.gpus, n.gpu_model),
            state(&n.state, colour),
            n.down_reason
                .as_deref()
                .map(crate::i18n::word)
                .unwrap_or_default(),
            n.container_runtime.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn node(args: NodeArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let set = |id: i64, s: &str, reason: Option<String>| -> anyhow::Result<Node> {
        api.call(
            "POST",
            &format!("/v1/nodes/{id}/state"),
            Some(json!({ "state": s, "reason": reason })),
        )
    };
    let n = match args.cmd {
        NodeCmd::List => {
            let ns: Vec<Node> = api.call("GET", "/v1/nodes", None)?;
            return print_nodes(&api, &ns);
        }
        NodeCmd::Show { id } => api.call("GET", &format!("/v1/nodes/{id}"), None)?,
        NodeCmd::Drain { id, reason } => set(id, "draining", reason)?,
        NodeCmd::Resume { id, reason } => set(id, "up", reason)?,
    };
    one(&api, n, print_nodes)
}

// --- audit ---

#[derive(Args)]
#[command(after_help = "Examples:
  haneul audit --json
  haneul audit list --action job. --limit 20
  haneul audit list --actor user/1 --json
  haneul audit list --target project/3 --after 100
  haneul audit verify")]
pub struct AuditArgs {
    /// What to do; `haneul audit` alone lists every entry, as `haneul audit list`.
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Audit entries, oldest first, filtered.
    #[command(after_help = "Examples:\n  haneul audit list --action token. --json")]
    List {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Only entries whose actor contains this text.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries whose action starts with this (job., token.revoke, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only entries whose target contains this text (job/42, project/3).
        #[arg(long)]
        target: Option<String>,
        /// At most this many entries (the newest that match).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Recompute the audit log's hash chain; exit 1 if it is broken. With --checkpoint, also
    /// check the server's signed checkpoints: an entry they name that is gone (a truncated
    /// tail) or changed (a rewritten one) is a failure.
    #[command(
        after_help = "Examples:\n  haneul audit verify\n  haneul audit verify --checkpoint /var/lib/haneul/audit-checkpoints.jsonl"
    )]
    Verify {
        /// The server's checkpoint file (DIR/audit-checkpoints.jsonl), or a copy of it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}

/// Entries come from the server in pages; the filters are applied here, as the API filters by
/// sequence number only.
const AUDIT_PAGE: i64 = 10_000;

pub fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let cmd = args.cmd.unwrap_or(AuditCmd::List {
        after: 0,
        actor: None,
        action: None,
        target: None,
        limit: None,
    });
    match cmd {
        AuditCmd::List {
            after,
            actor,
            action,
            target,
            limit,
        } => {
            let mut cursor = after;
            let mut found: Vec<AuditEntry> = Vec::new();
            loop {
                let page: Vec<AuditEntry> = api.call(
                    "GET",
                    &format!("/v1/audit?after={cursor}&limit={AUDIT_PAGE}"),
                    None,
                )?;
                let Some(last) = page.last() else { break };
                cursor = last.seq;
                let full = page.len() as i64 == AUDIT_PAGE;
                found.extend(page.into_iter().filter(|e| {
                    actor.as_ref().is_none_or(|a| e.actor.contains(a.as_str()))
                        && action
                            .as_ref()
                            .is_none_or(|a| e.action.starts_with(a.as_str()))
                        && target
                            .as_ref()
                            .is_none_or(|x| e.target.contains(x.as_str()))
                }));
                if !full {
                    break;
                }
            }
            if let Some(n) = limit
                && found.len() > n
            {
                found.drain(..found.len() - n);
            }
            if api.json {
                return print_json(&found);
            }
            let mut t = table(&["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "DETAIL"]);
            for e in &found {
                t.add_row(vec![
                    e.seq.to_string(),
                    e.at.to_string(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.detail.clone(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        AuditCmd::Verify { checkpoint } => {
            let v = match api.call::<AuditVerify>("GET", "/v1/audit/verify", None) {
                Ok(v) => v,
                Err(e) => bail!("{}", t(M::AuditBroken).arg("error", e)),
            };
            let anchored = match &checkpoint {
                None => None,
                Some(file) => Some(
                    check_checkpoints(&api, file, v.entries)
                        .map_err(|e| anyhow::anyhow!("{}", t(M::AuditBroken).arg("error", e)))?,
                ),
            };
            if api.json {
                let mut out = serde_json::to_value(&v)?;
                if let Some(cp) = &anchored {
                    out["checkpoint"] = json!({"seq": cp.seq, "hash": cp.hash, "at": cp.at,
                                               "public_key": cp.public_key});
                }
                return print_json(&out);
            }
            println!("{}", t(M::AuditIntact).arg("entries", v.entries));
            if let Some(cp) = anchored {
                println!(
                    "the signed checkpoints hold, the newest at entry {} (key {})",
                    cp.seq,
                    &cp.public_key[..16]
                );
            }
            Ok(())
        }
    }
}

/// Checks every checkpoint of `file` against the server's audit log.
fn check_checkpoints(
    api: &Api,
    file: &std::path::Path,
    entries: i64,
) -> Result<haneul_server::anchor::Checkpoint, String> {
    use haneul_server::anchor::{Found, check, read};
    let cps = read(file)?;
    let newest = check(&cps, |seq| {
        let page: Vec<AuditEntry> = api
            .call("GET", &format!("/v1/audit?after={}&limit=1", seq - 1), None)
            .map_err(|e| e.to_string())?;
        match page.first() {
            Some(e) if e.seq == seq => Ok(Found::Entry(e.hash.clone())),
            _ => Ok(Found::Missing { entries }),
        }
    })?;
    Ok(newest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        assert_eq!(
            parse_quota("H200=8").unwrap(),
            json!({"gpu_model": "H200", "guaranteed_milli": 8000})
        );
        assert_eq!(
            parse_quota("H100=0.5:16").unwrap(),
            json!({"gpu_model": "H100", "guaranteed_milli": 500, "borrow_limit_milli": 16000})
        );
        for bad in ["H200", "=8", "H200=x", "H200=-1", "H200=1:y"] {
            let e = parse_quota(bad).unwrap_err();
            assert!(e.0.contains("--quota"), "{bad}");
        }
    }
}
