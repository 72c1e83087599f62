//! Between store records and wire types, and from a submission to an engine job spec. The
//! checks that need no fleet happen here, so a bad submission is a 400 naming the field.

use crate::error::ApiError;
use haneul_api as api;
use haneul_model::{
    Dependency, DependencyKind, GpuModel, GpuRequest, JobId, JobSpec, Lending, MemMib, MilliCpu,
    MilliGpu, PriorityClass, ProjectId, Quota, Span,
};
use haneul_store as st;
use std::collections::BTreeMap;

pub fn role_to_api(r: st::Role) -> api::Role {
    match r {
        st::Role::CentreAdmin => api::Role::CentreAdmin,
        st::Role::OrgAdmin => api::Role::OrgAdmin,
        st::Role::Member => api::Role::Member,
        st::Role::Auditor => api::Role::Auditor,
        st::Role::Agent => api::Role::Agent,
    }
}

pub fn role_from_api(r: api::Role) -> st::Role {
    match r {
        api::Role::CentreAdmin => st::Role::CentreAdmin,
        api::Role::OrgAdmin => st::Role::OrgAdmin,
        api::Role::Member => st::Role::Member,
        api::Role::Auditor => st::Role::Auditor,
        api::Role::Agent => st::Role::Agent,
    }
}

pub fn org(o: st::OrgRecord) -> api::Org {
    api::Org {
        id: o.id,
        name: o.name,
        class: o.class,
        country: o.country,
        parent: o.parent,
        parent_country: o.parent_country,
        verification: o.verification.to_string(),
        created_at: o.created_at,
    }
}

pub fn quotas_to_api(q: &BTreeMap<GpuModel, Quota>) -> Vec<api::QuotaEntry> {
    q.iter()
        .map(|(m, q)| api::QuotaEntry {
            gpu_model: m.to_string(),
            guaranteed_milli: q.guaranteed.get(),
            borrow_limit_milli: q.borrow_limit.map(|l| l.get()),
        })
        .collect()
}

pub fn quotas_from_api(q: &[api::QuotaEntry]) -> Result<BTreeMap<GpuModel, Quota>, ApiError> {
    let mut out = BTreeMap::new();
    for (i, e) in q.iter().enumerate() {
        let model = GpuModel::new(&e.gpu_model)
            .map_err(|err| ApiError::bad(format!("quotas[{i}].gpu_model"), err.to_string()))?;
        let quota = Quota {
            guaranteed: MilliGpu(e.guaranteed_milli),
            borrow_limit: e.borrow_limit_milli.map(MilliGpu),
        };
        if out.insert(model, quota).is_some() {
            return Err(ApiError::bad(
                format!("quotas[{i}].gpu_model"),
                format!("`{}` is listed twice", e.gpu_model),
            ));
        }
    }
    Ok(out)
}

pub fn project(p: st::ProjectRecord) -> api::Project {
    api::Project {
        id: p.id,
        org: p.org_id,
        name: p.name,
        weight: p.weight,
        quotas: quotas_to_api(&p.quotas),
        created_at: p.created_at,
        gid: p.gid,
    }
}

pub fn user(u: st::UserRecord) -> api::User {
    api::User {
        id: u.id,
        name: u.name,
        role: role_to_api(u.role),
        org: u.org_id,
        projects: u.projects,
        created_at: u.created_at,
        uid: u.uid,
        gid: u.gid,
    }
}

pub fn token(t: st::TokenRecord) -> api::Token {
    api::Token {
        id: t.id,
        user: t.user_id,
        name: t.name,
        created_at: t.created_at,
        revoked_at: t.revoked_at,
        expires_at: t.expires_at,
    }
}

pub fn lending_str(l: Lending) -> &'static str {
    match l {
        Lending::Open => "open",
        Lending::OwnerOnly => "owner-only",
    }
}

pub fn pool(p: st::PoolRecord) -> api::Pool {
    api::Pool {
        id: p.id,
        name: p.name,
        owner: p.owner,
        lending: lending_str(p.lending).into(),
    }
}

pub fn node(n: st::NodeRecord) -> api::Node {
    api::Node {
        id: n.id,
        name: n.name,
        pool: n.pool_id,
        block: n.block,
        gpu_model: n.gpu_model.to_string(),
        gpus: n.gpus,
        gpu_memory_mib: n.gpu_memory_mib,
        nvlink_domain: n.nvlink_domain,
        cpu_milli: n.cpu_milli,
        memory_mib: n.memory_mib,
        state: n.state.to_string(),
        down_reason: n.down_reason,
        last_heartbeat: n.last_heartbeat,
        limits: n.limits,
        address: n.address,
        health: n.health,
        container_runtime: n.container_runtime,
    }
}

fn secs(s: Span) -> u64 {
    (s.millis().max(0) / 1000) as u64
}

fn priority_str(p: PriorityClass) -> &'static str {
    match p {
        PriorityClass::Low => "low",
        PriorityClass::Normal => "normal",
        PriorityClass::High => "high",
        PriorityClass::Urgent => "urgent",
    }
}

pub fn job(j: st::JobRecord) -> api::Job {
    let array_pending = j.array_pending();
    let (gpus_per_task, gpu_fraction_milli) = match j.spec.gpu {
        GpuRequest::None => (0, None),
        GpuRequest::Whole(n) => (n, None),
        GpuRequest::Fraction(m) => (0, Some(m)),
    };
    api::Job {
        id: j.id,
        project: j.project_id,
        user: j.user_id,
        name: j.name,
        state: j.state.to_string(),
        command: j.command,
        replicas: j.spec.replicas,
        gpus_per_task,
        gpu_fraction_milli,
        gpu_models: j.spec.gpu_models.iter().map(|m| m.to_string()).collect(),
        priority: priority_str(j.spec.priority).into(),
        preemptible: j.spec.preemptible,
        time_limit_s: j.spec.time_limit.map(secs),
        submitted_at: j.submitted_at,
        updated_at: j.updated_at,
        attempts: j.attempts,
        exit_code: j.exit_code,
        reason: j.reason,
        dependencies: j
            .spec
            .dependencies
            .iter()
            .map(|d| api::JobDependency {
                kind: d.kind.as_str().into(),
                job: d.job.0 as i64,
            })
            .collect(),
        array_pending,
        container_image: j.container_image,
        interactive: j.interactive,
        batch: j.batch.map(batch_to_api),
        pending_reason: None,
        array: j.array,
        array_job: j.array_job_id,
        array_task: j.array_task,
    }
}

/// A batch script's options on the wire.
pub fn batch_to_api(b: haneul_model::BatchOptions) -> api::JobBatch {
    api::JobBatch {
        output: b.output,
        error: b.error,
        chdir: b.chdir,
        submit_dir: b.submit_dir,
        account: b.account,
        partition: b.partition,
        ntasks: b.ntasks,
        mail_type: b.mail_type,
        mail_user: b.mail_user,
        signal: b.signal,
        requeue: b.requeue,
        export: b.export,
    }
}

/// Longest string of a batch script's options: paths may be long, nothing else is.
const MAX_BATCH_LEN: usize = 4096;

/// Checks a submission's `batch` and turns it into the model's. The strings are a tenant's:
/// bounded, and free of control characters (the agent puts some into a task's environment).
pub fn batch_from_api(b: &api::JobBatch) -> Result<haneul_model::BatchOptions, ApiError> {
    let fields = [
        ("output", &b.output),
        ("error", &b.error),
        ("chdir", &b.chdir),
        ("submit_dir", &b.submit_dir),
        ("account", &b.account),
        ("partition", &b.partition),
        ("mail_type", &b.mail_type),
        ("mail_user", &b.mail_user),
        ("signal", &b.signal),
        ("export", &b.export),
    ];
    for (name, v) in fields {
        let Some(v) = v else { continue };
        let field = format!("batch.{name}");
        if v.is_empty() {
            return Err(ApiError::bad(
                field,
                "must not be empty; leave it out instead",
            ));
        }
        if v.len() > MAX_BATCH_LEN {
            return Err(ApiError::bad(
                field,
                format!("at most {MAX_BATCH_LEN} bytes"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(ApiError::bad(field, "must not hold control characters"));
        }
    }
    for (name, v) in [("chdir", &b.chdir), ("submit_dir", &b.submit_dir)] {
        if v.as_deref().is_some_and(|d| !d.starts_with('/')) {
            return Err(ApiError::bad(
                format!("batch.{name}"),
                "must be an absolute path",
            ));
        }
    }
    if b.ntasks == Some(0) {
        return Err(ApiError::bad("batch.ntasks", "must be at least 1"));
    }
    Ok(haneul_model::BatchOptions {
        output: b.output.clone(),
        error: b.error.clone(),
        chdir: b.chdir.clone(),
        submit_dir: b.submit_dir.clone(),
        account: b.account.clone(),
        partition: b.partition.clone(),
        ntasks: b.ntasks,
        mail_type: b.mail_type.clone(),
        mail_user: b.mail_user.clone(),
        signal: b.signal.clone(),
        requeue: b.requeue,
        export: b.export.clone(),
    })
}

pub fn attempt(a: st::AttemptRecord) -> api::Attempt {
    api::Attempt {
        id: a.id,
        job: a.job_id,
        fence: a.fence,
        state: a.state.to_string(),
        stop_reason: a.stop_reason.map(|r| r.to_string()),
        tasks: a
            .placement
            .tasks
            .iter()
            .map(|t| api::TaskPlacement {
                node: t.node.get() as i64,
                gpus: t.gpus.clone(),
                milli_per_gpu: t.milli_per_gpu.get(),
            })
            .collect(),
        gpu_model: a.gpu_model.map(|m| m.to_string()),
        borrowing: a.borrowing,
        created_at: a.created_at,
        started_at: a.started_at,
        ended_at: a.ended_at,
        exit_code: a.exit_code,
        gpu_ms: a.gpu_ms,
    }
}

pub fn award(a: st::AwardRecord) -> api::Award {
    api::Award {
        id: a.id,
        project: a.project_id,
        gpu_model: a.gpu_model.to_string(),
        gpu_hours: a.gpu_hours,
        valid_from: a.valid_from,
        valid_until: a.valid_until,
        created_at: a.created_at,
        gpu_quota: a.gpu_quota,
        application: a.application_id,
    }
}

pub fn audit(a: st::AuditRecord) -> api::AuditEntry {
    api::AuditEntry {
        seq: a.seq,
        at: a.at,
        actor: a.actor,
        action: a.action,
        target: a.target,
        detail: a.detail,
        prev_hash: a.prev_hash,
        hash: a.hash,
    }
}

/// Longest time limit, grace or estimate accepted: a year, far beyond any award.
const MAX_SECS: u64 = 366 * 24 * 3600;

fn span_s(field: &str, s: u64) -> Result<Span, ApiError> {
    if s > MAX_SECS {
        return Err(ApiError::bad(field, format!("at most {MAX_SECS} seconds")));
    }
    Ok(Span::from_secs(s as i64))
}

/// Most parents of one job; Slurm's own limit is in the same range.
const MAX_DEPENDENCIES: usize = 1024;

fn dependencies(deps: &[api::JobDependency]) -> Result<Vec<Dependency>, ApiError> {
    if deps.len() > MAX_DEPENDENCIES {
        return Err(ApiError::bad(
            "dependencies",
            format!("at most {MAX_DEPENDENCIES} parents"),
        ));
    }
    let mut out: Vec<Dependency> = Vec::with_capacity(deps.len());
    for (i, d) in deps.iter().enumerate() {
        let kind = DependencyKind::parse(&d.kind)
            .map_err(|e| ApiError::bad(format!("dependencies[{i}].kind"), e.to_string()))?;
        let job = u64::try_from(d.job)
            .ok()
            .filter(|j| *j > 0)
            .ok_or_else(|| ApiError::bad(format!("dependencies[{i}].job"), "not a job id"))?;
        let dep = Dependency {
            kind,
            job: JobId(job),
        };
        if !out.contains(&dep) {
            out.push(dep);
        }
    }
    Ok(out)
}

/// Turns a submission into the engine's job spec, checking what needs no fleet.
pub fn job_spec(s: &api::JobSubmit) -> Result<JobSpec, ApiError> {
    if s.command.is_empty() || s.command[0].is_empty() {
        return Err(ApiError::bad(
            "command",
            "give the program to run and its arguments",
        ));
    }
    if s.command.len() > 4096 {
        return Err(ApiError::bad("command", "at most 4096 arguments"));
    }
    crate::validate::optional_name("name", &s.name, 256)?;
    for (i, arg) in s.command.iter().enumerate() {
        crate::validate::text(&format!("command[{i}]"), arg, 65_536)?;
    }
    if s.replicas > 4096 {
        return Err(ApiError::bad("replicas", "at most 4096 tasks in one job"));
    }
    if s.gpus_per_task > crate::MAX_GPUS_PER_NODE {
        return Err(ApiError::bad(
            "gpus_per_task",
            format!(
                "a task runs on one node, which has at most {} GPUs",
                crate::MAX_GPUS_PER_NODE
            ),
        ));
    }
    let gpu = match (s.gpus_per_task, s.gpu_fraction_milli) {
        (0, None) => GpuRequest::None,
        (n, None) => GpuRequest::Whole(n),
        (0, Some(m)) => GpuRequest::Fraction(m),
        (_, Some(_)) => {
            return Err(ApiError::bad(
                "gpu_fraction_milli",
                "give either whole GPUs (gpus_per_task) or a fraction of one, not both",
            ));
        }
    };
    let mut models = Vec::with_capacity(s.gpu_models.len());
    for (i, m) in s.gpu_models.iter().enumerate() {
        models.push(
            GpuModel::new(m)
                .map_err(|e| ApiError::bad(format!("gpu_models[{i}]"), e.to_string()))?,
        );
    }
    let project =
        u32::try_from(s.project).map_err(|_| ApiError::bad("project", "not a project id"))?;
    let spec = JobSpec {
        project: ProjectId(project),
        name: s.name.clone(),
        replicas: s.replicas,
        gpu,
        cpu_per_task: MilliCpu(s.cpu_milli_per_task),
        memory_per_task: MemMib(s.memory_mib_per_task),
        gpu_models: models,
        priority: match &s.priority {
            Some(p) => PriorityClass::parse(p)?,
            None => PriorityClass::Normal,
        },
        preemptible: s.preemptible,
        grace: span_s("grace_s", s.grace_s)?,
        time_limit: s
            .time_limit_s
            .map(|t| span_s("time_limit_s", t))
            .transpose()?,
        runtime_estimate: s
            .runtime_estimate_s
            .map(|t| span_s("runtime_estimate_s", t))
            .transpose()?,
        dependencies: dependencies(&s.dependencies)?,
    };
    if let Some(image) = &s.container_image {
        container_image(image)?;
    }
    spec.validate().map_err(|e| match ApiError::from(e) {
        ApiError::BadRequest { field, reason } => ApiError::bad(submit_field(&field), reason),
        other => other,
    })?;
    Ok(spec)
}

/// Longest container image accepted: references are far shorter, paths may be long.
const MAX_IMAGE_LEN: usize = 1024;

/// Checks a job's `container_image`: an OCI reference or an absolute path. The agent passes it
/// to the runtime as one argument, so it must not look like an option or hold spaces.
fn container_image(image: &str) -> Result<(), ApiError> {
    const FIELD: &str = "container_image";
    const FORMS: &str = "give an OCI image reference (nvcr.io/nvidia/pytorch:24.10-py3) or an \
                         absolute path to a root file system directory or a .sif file";
    if image.is_empty() {
        return Err(ApiError::bad(
            FIELD,
            "must not be empty; leave it out to run the command without a container",
        ));
    }
    if image.chars().count() > MAX_IMAGE_LEN {
        return Err(ApiError::bad(
            FIELD,
            format!("at most {MAX_IMAGE_LEN} characters"),
        ));
    }
    if image.starts_with('-') {
        return Err(ApiError::bad(
            FIELD,
            format!("must not start with `-`; {FORMS}"),
        ));
    }
    if let Some(path) = image.strip_prefix('/') {
        if image.chars().any(char::is_control)
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ApiError::bad(
                FIELD,
                "a path must be absolute and normalised (no `.`, `..` or empty components) \
                 and free of control characters",
            ));
        }
        return Ok(());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if image.starts_with('.') || !image.chars().all(allowed) {
        return Err(ApiError::bad(
            FIELD,
            format!("{image:?} is neither an image reference nor an absolute path; {FORMS}"),
        ));
    }
    Ok(())
}

/// The request field behind a job-spec field the model names, so that a 400 points at what
/// the client sent.
fn submit_field(model: &str) -> &str {
    match model {
        "gpus" => "gpus_per_task",
        "gpu_fraction" => "gpu_fraction_milli",
        "cpu_per_task" => "cpu_milli_per_task",
        "memory_per_task" => "memory_mib_per_task",
        "time_limit" => "time_limit_s",
        "runtime_estimate" => "runtime_estimate_s",
        "grace" => "grace_s",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(image: &str) -> String {
        match container_image(image) {
            Err(ApiError::BadRequest { field, reason }) => {
                assert_eq!(field, "container_image");
                reason
            }
            other => panic!("{image:?} gave {other:?}"),
        }
    }

    #[test]
    fn batch_options_are_checked() {
        let ok = api::JobBatch {
            output: Some("out-%j.txt".into()),
            chdir: Some("/scratch/u".into()),
            ..Default::default()
        };
        let m = batch_from_api(&ok).unwrap();
        assert_eq!(batch_to_api(m), ok);
        let field = |b: api::JobBatch| match batch_from_api(&b) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut b = ok.clone();
        b.output = Some("a\nb".into());
        assert_eq!(field(b), "batch.output");
        let mut b = ok.clone();
        b.chdir = Some("relative".into());
        assert_eq!(field(b), "batch.chdir");
        let mut b = ok.clone();
        b.mail_user = Some("x".repeat(MAX_BATCH_LEN + 1));
        assert_eq!(field(b), "batch.mail_user");
        let mut b = ok;
        b.ntasks = Some(0);
        assert_eq!(field(b), "batch.ntasks");
    }

    #[test]
    fn container_images() {
        for ok in [
            "ubuntu:24.04",
            "nvcr.io/nvidia/pytorch:24.10-py3",
            "docker://ghcr.io/org/img@sha256:0123abcd",
            "/srv/images/rootfs",
            "/srv/images/pytorch.sif",
        ] {
            assert!(container_image(ok).is_ok(), "{ok}");
        }
        assert!(refusal("").contains("must not be empty"));
        assert!(refusal(&"a".repeat(1025)).contains("at most 1024"));
        assert!(refusal("--privileged").contains("must not start with `-`"));
        assert!(refusal("/srv/../etc").contains("normalised"));
        assert!(refusal("/srv//x").contains("normalised"));
        assert!(refusal("./rootfs").contains("neither an image reference nor an absolute path"));
        assert!(refusal("ubuntu 24.04").contains("neither"));
        assert!(refusal("img;rm").contains("neither"));
    }
}
