//! Operator and applicant commands for organisations, awards, programmes and statements:
//! `org`, `award`, `call`, `application` and `statement` (docs/accounting.md). Each is a thin
//! client of the `/v1` API; the server decides and records.

use crate::client::{Api, Conn};
use crate::output::{print_json, table};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use haneul_api::*;
use serde_json::json;
use std::path::PathBuf;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn date(ms: i64) -> String {
    haneul_server::calendar::Calendar::from_env().date(ms)
}

// --- org ---

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Register an organisation; export screening refuses restricted countries and denied parties.
    #[command(after_help = "Examples:\n  haneul org create kaist --country KR\n  \
        haneul org create acme-kr --country KR --parent-country US --class enterprise --pending")]
    Create(OrgCreateArgs),
    /// List organisations.
    #[command(after_help = "Examples:\n  haneul org list --json")]
    List(ConnArgs),
    /// Show one organisation.
    #[command(after_help = "Examples:\n  haneul org show 2")]
    Show(IdArgs),
    /// Mark an organisation verified (or pending, or suspended); only verified ones run jobs.
    #[command(
        after_help = "Examples:\n  haneul org verify 2\n  haneul org verify 2 --status suspended"
    )]
    Verify(OrgVerifyArgs),
    /// Import a denied-party list (CSV with `name`, `country` and optionally `source` columns).
    #[command(after_help = "Examples:\n  haneul org import-denied denied.csv --source entity-list")]
    ImportDenied(ImportDeniedArgs),
}

#[derive(Args)]
pub struct ConnArgs {
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct IdArgs {
    id: i64,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct OrgCreateArgs {
    name: String,
    /// ISO 3166-1 alpha-2 country of the headquarters, for example KR.
    #[arg(long)]
    country: String,
    /// Country of the ultimate parent, when it is not a registered organisation.
    #[arg(long)]
    parent_country: Option<String>,
    /// Id of the parent organisation, when registered here.
    #[arg(long)]
    parent: Option<i64>,
    /// academia, institute, startup, enterprise, partner or public-agency.
    #[arg(long, default_value = "academia")]
    class: String,
    /// Register it unverified: its jobs are held until `haneul org verify`.
    #[arg(long)]
    pending: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct OrgVerifyArgs {
    id: i64,
    /// verified, pending or suspended.
    #[arg(long, default_value = "verified")]
    status: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct ImportDeniedArgs {
    file: PathBuf,
    /// Where the list comes from, for rows that name no source.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

fn print_orgs(api: &Api, orgs: &[Org]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&orgs);
    }
    let mut t = table(&["ID", "NAME", "CLASS", "COUNTRY", "PARENT", "VERIFICATION"]);
    for o in orgs {
        let parent = match (o.parent, &o.parent_country) {
            (Some(p), _) => format!("org {p}"),
            (None, Some(c)) => c.clone(),
            (None, None) => "-".into(),
        };
        t.add_row(vec![
            o.id.to_string(),
            o.name.clone(),
            o.class.clone(),
            o.country.clone(),
            parent,
            o.verification.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn org(cmd: OrgCommand) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Create(a) => {
            let api = a.conn.open()?;
            let mut body = json!({"name": a.name, "country": a.country, "class": a.class});
            if let Some(c) = a.parent_country {
                body["parent_country"] = json!(c);
            }
            if let Some(p) = a.parent {
                body["parent"] = json!(p);
            }
            if a.pending {
                body["verification"] = json!("pending");
            }
            let o: Org = api.call("POST", "/v1/orgs", Some(body))?;
            if api.json {
                return print_json(&o);
            }
            println!("organisation {} `{}`: {}", o.id, o.name, o.verification);
            Ok(())
        }
        OrgCommand::List(a) => {
            let api = a.conn.open()?;
            let orgs: Vec<Org> = api.call("GET", "/v1/orgs", None)?;
            print_orgs(&api, &orgs)
        }
        OrgCommand::Show(a) => {
            let api = a.conn.open()?;
            let o: Org = api.call("GET", &format!("/v1/orgs/{}", a.id), None)?;
            if api.json {
                return print_json(&o);
            }
            print_orgs(&api, &[o])
        }
        OrgCommand::Verify(a) => {
            let api = a.conn.open()?;
            let o: Org = api.call(
                "POST",
                &format!("/v1/orgs/{}/verify", a.id),
                Some(json!({"status": a.status})),
            )?;
            if api.json {
                return print_json(&o);
            }
            println!("organisation {} `{}`: {}", o.id, o.name, o.verification);
            Ok(())
        }
        OrgCommand::ImportDenied(a) => {
            let api = a.conn.open()?;
            let csv = std::fs::read_to_string(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let r: DeniedPartyImported = api.call(
                "POST",
                "/v1/denied-parties",
                Some(json!({"csv": csv, "source": a.source})),
            )?;
            if api.json {
                return print_json(&r);
            }
            println!("imported {} denied parties", r.imported);
            Ok(())
        }
    }
}

// --- award ---

#[derive(Subcommand)]
pub enum AwardCommand {
    /// Grant GPU-hours of one GPU model to a project for a number of days.
    #[command(
        after_help = "Examples:\n  haneul award create --project 3 --gpu-model H200 \
        --gpu-hours 2880 --gpu-quota 4 --days 30"
    )]
    Create(AwardCreateArgs),
    /// Awards with their balances (like `haneul usage`, for every project you may see).
    #[command(after_help = "Examples:\n  haneul award list --json")]
    List(ConnArgs),
    /// Top an award up (positive hours) or take hours back (negative).
    #[command(
        after_help = "Examples:\n  haneul award adjust 7 --gpu-hours 500 --reason 'phase two'\n  \
        haneul award adjust 7 --gpu-hours=-200 --reason 'idle for a month'"
    )]
    Adjust(AwardAdjustArgs),
    /// Awards whose GPUs sat idle: candidates for take-back.
    #[command(after_help = "Examples:\n  haneul award underuse")]
    Underuse(ConnArgs),
    /// Notices raised to operators (award warnings, spent awards, compute threshold, underuse).
    #[command(after_help = "Examples:\n  haneul award notices --json")]
    Notices(ConnArgs),
}

#[derive(Args)]
pub struct AwardCreateArgs {
    #[arg(long)]
    project: i64,
    #[arg(long)]
    gpu_model: String,
    #[arg(long)]
    gpu_hours: i64,
    /// Whole GPUs the project may hold at once (its guarantee).
    #[arg(long, default_value_t = 0)]
    gpu_quota: i64,
    /// Days the award is valid, from --from (or from now).
    #[arg(long, conflicts_with = "until", required_unless_present = "until")]
    days: Option<i64>,
    /// First day of the award, YYYY-MM-DD: it starts at that day's midnight in the centre's
    /// time zone (default: now).
    #[arg(long, value_parser = parse_day)]
    from: Option<jiff::civil::Date>,
    /// The day the award ends, YYYY-MM-DD: it ends as that day begins in the centre's time zone.
    #[arg(long, value_parser = parse_day)]
    until: Option<jiff::civil::Date>,
    #[command(flatten)]
    conn: Conn,
}

/// A day written `YYYY-MM-DD`, checked here so that a typo is a usage error before any request.
fn parse_day(raw: &str) -> Result<jiff::civil::Date, String> {
    let well_formed = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    well_formed
        .then(|| raw.parse().ok())
        .flatten()
        .ok_or_else(|| format!("expected a date YYYY-MM-DD, got `{raw}`"))
}

/// The award's window as the API takes it: dates stay dates, so that the server reads them in
/// the centre's time zone; without --from it starts now.
fn award_window(
    from: Option<jiff::civil::Date>,
    until: Option<jiff::civil::Date>,
    days: Option<i64>,
    now: i64,
) -> anyhow::Result<(serde_json::Value, serde_json::Value)> {
    let valid_from = match from {
        Some(d) => json!(d.to_string()),
        None => json!(now),
    };
    let valid_until = match (until, days, from) {
        (Some(d), _, _) => json!(d.to_string()),
        (None, Some(n), _) if n < 1 => bail!("--days: must be at least 1"),
        (None, Some(n), Some(d)) => json!(
            d.checked_add(jiff::Span::new().try_days(n)?)
                .context("--days: the award would end after the year 9999")?
                .to_string()
        ),
        (None, Some(n), None) => json!(now + n * 86_400_000),
        (None, None, _) => bail!("give --days or --until"),
    };
    if let (Some(f), Some(u)) = (from, until)
        && u <= f
    {
        bail!("--until {u} must be after --from {f}");
    }
    Ok((valid_from, valid_until))
}

#[derive(Args)]
pub struct AwardAdjustArgs {
    id: i64,
    #[arg(long, allow_negative_numbers = true)]
    gpu_hours: i64,
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    conn: Conn,
}

pub fn award(cmd: AwardCommand) -> anyhow::Result<()> {
    match cmd {
        AwardCommand::Create(a) => {
            let (valid_from, valid_until) = award_window(a.from, a.until, a.days, now_ms())?;
            let api = a.conn.open()?;
            let award: Award = api.call(
                "POST",
                "/v1/awards",
                Some(json!({"project": a.project, "gpu_model": a.gpu_model,
                    "gpu_hours": a.gpu_hours, "gpu_quota": a.gpu_quota,
                    "valid_from": valid_from, "valid_until": valid_until})),
            )?;
            if api.json {
                return print_json(&award);
            }
            println!(
                "award {}: {} {} GPU-hours to project {} until {}",
                award.id,
                award.gpu_hours,
                award.gpu_model,
                award.project,
                date(award.valid_until)
            );
            Ok(())
        }
        AwardCommand::List(a) => crate::client::usage_of(a.conn),
        AwardCommand::Adjust(a) => {
            let api = a.conn.open()?;
            let c: AwardChange = api.call(
                "POST",
                &format!("/v1/awards/{}/adjust", a.id),
                Some(json!({"gpu_hours": a.gpu_hours, "reason": a.reason})),
            )?;
            if api.json {
                return print_json(&c);
            }
            println!(
                "award {}: {:+} GPU-hours ({})",
                c.award, c.gpu_hours, c.reason
            );
            Ok(())
        }
        AwardCommand::Underuse(a) => {
            let api = a.conn.open()?;
            let rows: Vec<Underuse> = api.call("GET", "/v1/underuse", None)?;
            if api.json {
                return print_json(&rows);
            }
            let mut t = table(&[
                "AWARD", "PROJECT", "QUOTA", "DAYS", "OF", "CHARGED", "MEASURED", "UNKNOWN",
                "FLAGGED",
            ]);
            for u in &rows {
                t.add_row(vec![
                    u.award.to_string(),
                    u.project.to_string(),
                    u.gpu_quota.to_string(),
                    format!("{:.1}", u.window_days),
                    format!("{:.1}", u.capacity_gpu_hours),
                    format!("{:.1}", u.used_gpu_hours),
                    format!("{:.1}", u.measured_gpu_hours),
                    format!("{:.1}", u.unmeasured_gpu_hours),
                    match u.flagged_by.as_deref() {
                        Some("measured") => "take back? (held, idle)",
                        Some(_) => "take back? (not held)",
                        None => "",
                    }
                    .to_string(),
                ]);
            }
            println!("{t}");
            println!(
                "GPU-hours over the window: OF what the quota could run, CHARGED what the award \
                 held, MEASURED what its jobs used (each attempt's GPU-hours times its job's \
                 mean GPU utilisation), UNKNOWN held by jobs with no GPU samples"
            );
            Ok(())
        }
        AwardCommand::Notices(a) => {
            let api = a.conn.open()?;
            let rows: Vec<Notice> = api.call("GET", "/v1/notices", None)?;
            if api.json {
                return print_json(&rows);
            }
            let mut t = table(&["ID", "DATE", "KIND", "PROJECT", "AWARD", "JOB", "DETAIL"]);
            for n in &rows {
                t.add_row(vec![
                    n.id.to_string(),
                    date(n.at),
                    n.kind.clone(),
                    n.project.to_string(),
                    n.award.map_or("-".into(), |a| a.to_string()),
                    n.job.map_or("-".into(), |j| j.to_string()),
                    n.detail.clone(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

// --- call ---

#[derive(Subcommand)]
pub enum CallCommand {
    /// Open a call of a programme with one or more tracks.
    #[command(
        after_help = "Examples:\n  haneul call create --programme national-ai --name 2027-spring \
        --gpu-model H200 --capacity 64 \\\n    --track name=small,min=1,max=4,days=90,org-cap=4,region=KR \\\n    \
        --track name=server,min=8,max=16,days=60,whole-server"
    )]
    Create(CallCreateArgs),
    /// List the calls and their state.
    #[command(after_help = "Examples:\n  haneul call list")]
    List(ConnArgs),
    /// Show one call: its tracks and, once awarded, its outcome.
    #[command(after_help = "Examples:\n  haneul call show 1 --json")]
    Show(IdArgs),
    /// Stop taking applications.
    #[command(after_help = "Examples:\n  haneul call close 1")]
    Close(IdArgs),
    /// Take applications again.
    #[command(after_help = "Examples:\n  haneul call open 1")]
    Open(IdArgs),
    /// Rank the applications by their scores and make the awards within the call's capacity.
    #[command(after_help = "Examples:\n  haneul call award 1")]
    Award(IdArgs),
}

#[derive(Args)]
pub struct CallCreateArgs {
    #[arg(long)]
    programme: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    gpu_model: String,
    /// GPUs the call can award at once, over all tracks.
    #[arg(long)]
    capacity: i64,
    /// A track: name=N,min=G,max=G,days=D[,org-cap=G][,region=R][,whole-server][,server-gpus=G].
    #[arg(long, required = true)]
    track: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Parses one `--track` value.
pub fn parse_track(spec: &str) -> anyhow::Result<Track> {
    let mut t = Track {
        name: String::new(),
        min_gpus: 1,
        max_gpus: 0,
        whole_server: false,
        server_gpus: 8,
        max_days: 0,
        per_org_cap_gpus: None,
        region: None,
    };
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let num = || -> anyhow::Result<i64> {
            v.parse()
                .with_context(|| format!("--track: `{k}` needs a whole number, got `{v}`"))
        };
        match k {
            "name" => t.name = v.to_string(),
            "min" => t.min_gpus = num()?,
            "max" => t.max_gpus = num()?,
            "days" => t.max_days = num()?,
            "org-cap" => t.per_org_cap_gpus = Some(num()?),
            "region" => t.region = Some(v.to_string()),
            "whole-server" => t.whole_server = true,
            "server-gpus" => t.server_gpus = num()?,
            other => bail!(
                "--track: unknown key `{other}`; use name, min, max, days, org-cap, region, \
                 whole-server, server-gpus"
            ),
        }
    }
    if t.name.is_empty() || t.max_gpus == 0 || t.max_days == 0 {
        bail!("--track: give at least name=, max= and days=, for example name=small,max=4,days=90");
    }
    Ok(t)
}

fn print_call(api: &Api, c: &Call) -> anyhow::Result<()> {
    if api.json {
        return print_json(c);
    }
    println!(
        "call {} `{}` of {}: {} GPUs of {}, {}",
        c.id, c.name, c.programme, c.capacity_gpus, c.gpu_model, c.state
    );
    let mut t = table(&[
        "TRACK",
        "GPUS",
        "WHOLE SERVERS",
        "MAX DAYS",
        "ORG CAP",
        "REGION",
    ]);
    for tr in &c.tracks {
        t.add_row(vec![
            tr.name.clone(),
            format!("{}-{}", tr.min_gpus, tr.max_gpus),
            if tr.whole_server {
                tr.server_gpus.to_string()
            } else {
                "-".into()
            },
            tr.max_days.to_string(),
            tr.per_org_cap_gpus.map_or("-".into(), |c| c.to_string()),
            tr.region.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn call(cmd: CallCommand) -> anyhow::Result<()> {
    match cmd {
        CallCommand::Create(a) => {
            let tracks = a
                .track
                .iter()
                .map(|s| parse_track(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let api = a.conn.open()?;
            let c: Call = api.call(
                "POST",
                "/v1/calls",
                Some(json!({"programme": a.programme, "name": a.name,
                    "gpu_model": a.gpu_model, "capacity_gpus": a.capacity, "tracks": tracks})),
            )?;
            print_call(&api, &c)
        }
        CallCommand::List(a) => {
            let api = a.conn.open()?;
            let calls: Vec<Call> = api.call("GET", "/v1/calls", None)?;
            if api.json {
                return print_json(&calls);
            }
            let mut t = table(&["ID", "PROGRAMME", "NAME", "GPU MODEL", "CAPACITY", "STATE"]);
            for c in &calls {
                t.add_row(vec![
                    c.id.to_string(),
                    c.programme.clone(),
                    c.name.clone(),
                    c.gpu_model.clone(),
                    c.capacity_gpus.to_string(),
                    crate::i18n::word(&c.state),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        CallCommand::Show(a) => {
            let api = a.conn.open()?;
            let c: Call = api.call("GET", &format!("/v1/calls/{}", a.id), None)?;
            print_call(&api, &c)
        }
        CallCommand::Close(a) => set_call_state(a, "closed"),
        CallCommand::Open(a) => set_call_state(a, "open"),
        CallCommand::Award(a) => {
            let api = a.conn.open()?;
            let r: CallAwarded = api.call("POST", &format!("/v1/calls/{}/award", a.id), None)?;
            if api.json {
                return print_json(&r);
            }
            for w in &r.awards {
                println!(
                    "award {}: project {} gets {} GPU-hours ({} GPUs) until {}",
                    w.id,
                    w.project,
                    w.gpu_hours,
                    w.gpu_quota,
                    date(w.valid_until)
                );
            }
            for d in &r.declined {
                println!("application {} declined: {}", d.application, d.reason);
            }
            Ok(())
        }
    }
}

fn set_call_state(a: IdArgs, state: &str) -> anyhow::Result<()> {
    let api = a.conn.open()?;
    let c: Call = api.call(
        "POST",
        &format!("/v1/calls/{}/state", a.id),
        Some(json!({"state": state})),
    )?;
    print_call(&api, &c)
}

// --- application ---

#[derive(Subcommand)]
pub enum ApplicationCommand {
    /// Apply to a call for one of your organisation's projects.
    #[command(
        after_help = "Examples:\n  haneul application create --call 1 --project 3 --track small \
        --gpus 4 --days 30 --plan 'fine-tune a Korean LLM'"
    )]
    Create(ApplicationCreateArgs),
    /// A call's applications with their scores.
    #[command(after_help = "Examples:\n  haneul application list --call 1")]
    List(ApplicationListArgs),
    /// Record a reviewer's score (0 to 10).
    #[command(after_help = "Examples:\n  haneul application score 4 --score 8 --reviewer kim")]
    Score(ScoreArgs),
}

#[derive(Args)]
pub struct ApplicationCreateArgs {
    #[arg(long)]
    call: i64,
    #[arg(long)]
    project: i64,
    #[arg(long)]
    track: String,
    #[arg(long)]
    gpus: i64,
    #[arg(long)]
    days: i64,
    /// What the GPUs are for.
    #[arg(long)]
    plan: String,
    /// Default: the organisation's country.
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct ApplicationListArgs {
    #[arg(long)]
    call: i64,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct ScoreArgs {
    id: i64,
    #[arg(long)]
    score: i64,
    /// Default: your user name.
    #[arg(long)]
    reviewer: Option<String>,
    #[arg(long, default_value = "")]
    comment: String,
    #[command(flatten)]
    conn: Conn,
}

fn print_applications(api: &Api, apps: &[Application]) -> anyhow::Result<()> {
    if api.json {
        return print_json(&apps);
    }
    let mut t = table(&[
        "ID", "PROJECT", "TRACK", "GPUS", "DAYS", "REGION", "SCORE", "STATE",
    ]);
    for a in apps {
        t.add_row(vec![
            a.id.to_string(),
            a.project.to_string(),
            a.track.clone(),
            a.gpus.to_string(),
            a.days.to_string(),
            a.region.clone(),
            // Applicants are told the mean only (review is blind), so no count for them.
            match (a.mean_score, a.scores.len()) {
                (None, _) => "-".into(),
                (Some(m), 0) => format!("{m:.2}"),
                (Some(m), n) => format!("{m:.2} ({n})"),
            },
            crate::i18n::word(&a.state),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn application(cmd: ApplicationCommand) -> anyhow::Result<()> {
    match cmd {
        ApplicationCommand::Create(a) => {
            let api = a.conn.open()?;
            let mut body = json!({"project": a.project, "track": a.track, "gpus": a.gpus,
                "days": a.days, "plan": a.plan});
            if let Some(r) = a.region {
                body["region"] = json!(r);
            }
            let app: Application = api.call(
                "POST",
                &format!("/v1/calls/{}/applications", a.call),
                Some(body),
            )?;
            if api.json {
                return print_json(&app);
            }
            print_applications(&api, &[app])
        }
        ApplicationCommand::List(a) => {
            let api = a.conn.open()?;
            let apps: Vec<Application> =
                api.call("GET", &format!("/v1/calls/{}/applications", a.call), None)?;
            print_applications(&api, &apps)
        }
        ApplicationCommand::Score(a) => {
            let api = a.conn.open()?;
            let mut body = json!({"score": a.score, "comment": a.comment});
            if let Some(r) = a.reviewer {
                body["reviewer"] = json!(r);
            }
            let app: Application = api.call(
                "POST",
                &format!("/v1/applications/{}/scores", a.id),
                Some(body),
            )?;
            if api.json {
                return print_json(&app);
            }
            print_applications(&api, &[app])
        }
    }
}

// --- statement ---

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul statement --month 2026-12\n  \
    haneul statement --month 2026-12 --org 2 --csv > kaist-2026-12.csv")]
pub struct StatementArgs {
    /// YYYY-MM: the month in the centre's time zone (Asia/Seoul unless the centre sets another).
    #[arg(long)]
    month: String,
    #[arg(long)]
    project: Option<i64>,
    #[arg(long)]
    org: Option<i64>,
    /// Print CSV (the server's rendering) instead of a table.
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    conn: Conn,
}

pub fn statement(a: StatementArgs) -> anyhow::Result<()> {
    let api = a.conn.open()?;
    let mut path = format!("/v1/statements?month={}", a.month);
    if let Some(p) = a.project {
        path.push_str(&format!("&project={p}"));
    }
    if let Some(o) = a.org {
        path.push_str(&format!("&org={o}"));
    }
    if a.csv {
        print!(
            "{}",
            api.call_text("GET", &format!("{path}&format=csv"), None)?
        );
        return Ok(());
    }
    let s: Statement = api.call("GET", &path, None)?;
    if api.json {
        return print_json(&s);
    }
    let mut t = table(&[
        "ORG",
        "PROJECT",
        "GPU MODEL",
        "GPU-HOURS",
        "CHARGED",
        "REFUNDED",
        "CREDITED",
        "USED (MEASURED)",
        "NOT MEASURED",
        "KWH",
    ]);
    for l in &s.lines {
        t.add_row(vec![
            l.org.to_string(),
            l.project.to_string(),
            l.gpu_model.clone(),
            haneul_api::fixed3(l.gpu_hours),
            haneul_api::fixed3(l.charged_gpu_hours),
            haneul_api::fixed3(l.refunded_gpu_hours),
            haneul_api::fixed3(l.credited_gpu_hours),
            haneul_api::fixed3(l.used_gpu_hours),
            haneul_api::fixed3(l.unmeasured_gpu_hours),
            haneul_api::fixed3(l.energy_kwh),
        ]);
    }
    println!("{t}");
    let h = |ms: i64| ms as f64 / 3.6e6;
    println!(
        "{}: charged {}, refunded {}, credited {} GPU-hours over {} ledger rows",
        s.month,
        haneul_api::fixed3(h(s.charged_ms)),
        haneul_api::fixed3(h(s.refunded_ms)),
        haneul_api::fixed3(h(s.credited_ms)),
        s.ledger_rows
    );
    println!(
        "USED (MEASURED): each charged attempt's GPU-hours times its job's mean GPU utilisation; \
         NOT MEASURED: GPU-hours of jobs with no GPU samples; KWH: the jobs' GPU energy"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks() {
        let t = parse_track("name=server,min=8,max=16,days=60,whole-server,org-cap=16").unwrap();
        assert_eq!((t.min_gpus, t.max_gpus, t.max_days), (8, 16, 60));
        assert!(t.whole_server);
        assert_eq!(t.per_org_cap_gpus, Some(16));
        assert!(parse_track("name=x,max=4").is_err());
        assert!(parse_track("name=x,max=four,days=3").is_err());
        assert!(parse_track("name=x,max=4,days=3,colour=red").is_err());
    }

    #[test]
    fn award_windows_keep_dates_for_the_server() {
        let day = |s: &str| parse_day(s).unwrap();
        let now = 1_800_000_000_000;
        let (f, u) =
            award_window(Some(day("2026-03-01")), Some(day("2026-06-01")), None, now).unwrap();
        assert_eq!((f, u), (json!("2026-03-01"), json!("2026-06-01")));
        let (f, u) = award_window(Some(day("2026-12-01")), None, Some(31), now).unwrap();
        assert_eq!((f, u), (json!("2026-12-01"), json!("2027-01-01")));
        let (f, u) = award_window(None, None, Some(2), now).unwrap();
        assert_eq!((f, u), (json!(now), json!(now + 2 * 86_400_000)));
        let (f, u) = award_window(None, Some(day("2027-01-01")), None, now).unwrap();
        assert_eq!((f, u), (json!(now), json!("2027-01-01")));
        assert!(award_window(None, None, Some(0), now).is_err());
        assert!(award_window(None, None, None, now).is_err());
        assert!(award_window(Some(day("2026-03-01")), Some(day("2026-03-01")), None, now).is_err());
        for bad in [
            "2026-3-01",
            "2026-02-30",
            "20260301",
            "2026-03-01T00",
            "２０２６-03-01",
            "",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
