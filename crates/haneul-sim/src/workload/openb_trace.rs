//! The Alibaba openb pod lists as a timed workload: each pod is a one-task job with its CPU,
//! memory, GPU count or share and allowed GPU models, submitted at `creation_time` and running
//! from `scheduled_time` to `deletion_time` in the trace. The node list becomes a fleet.

use super::{ProjectTable, SimJob, Workload};
use crate::error::SimError;
use crate::fleet_file::FleetSpec;
use haneul_model::{
    Block, BlockId, Fleet, GpuModel, GpuRequest, MemMib, MilliCpu, Node, NodeId, NodeState,
    OrgClass, Pool, PoolId, Span, Time,
};
use std::path::Path;

/// Pods as jobs of one project. Times in the trace are seconds; a pod that never ends in the
/// trace runs until the trace's last deletion.
pub fn load(path: &Path) -> Result<Workload, SimError> {
    let pods = crate::openb::load_pods(path)?;
    let end = pods
        .iter()
        .filter_map(|p| p.deletion_time)
        .max()
        .unwrap_or(0);
    let mut projects = ProjectTable::default();
    let project = projects.get_or_add("openb", OrgClass::Enterprise);
    let mut jobs = Vec::with_capacity(pods.len());
    for p in &pods {
        let bad = |field: &str, reason: String| SimError::Row {
            path: path.to_path_buf(),
            line: p.line,
            field: field.into(),
            reason,
        };
        let gpu = GpuRequest::from_count_and_milli(p.num_gpu, p.gpu_milli)
            .map_err(|e| bad("gpu_milli", e.to_string()))?;
        if gpu == GpuRequest::None && p.cpu_milli == 0 {
            return Err(bad(
                "cpu_milli",
                "a pod with no GPU must ask for some CPU".into(),
            ));
        }
        let submit = p.creation_time.unwrap_or(0);
        let start = p.scheduled_time.unwrap_or(submit);
        let stop = p.deletion_time.unwrap_or(end);
        let limit = super::MAX_SUBMIT_S as i64;
        if !(0..=limit).contains(&submit) || !(0..=limit).contains(&start) {
            return Err(bad(
                "creation_time",
                format!("{submit} is not a time from 0 to the year 9999 in seconds"),
            ));
        }
        if stop < start || stop - start > super::MAX_DURATION_S as i64 {
            return Err(bad(
                "deletion_time",
                format!("{stop} is before the pod started ({start}) or ten years after it"),
            ));
        }
        let mut job = SimJob::new(
            Time::from_secs(submit),
            project,
            1,
            gpu,
            Span::from_secs(stop - start),
        );
        job.cpu = MilliCpu(p.cpu_milli);
        job.mem = MemMib(p.memory_mib);
        for m in &p.gpu_spec {
            job.models
                .push(GpuModel::new(m).map_err(|e| bad("gpu_spec", e.to_string()))?);
        }
        job.line = p.line;
        jobs.push(job);
    }
    let mut w = Workload {
        source: path.to_path_buf(),
        projects: projects.defs,
        jobs,
        model_field: "gpu_spec",
    };
    w.finish_loading();
    Ok(w)
}

/// The openb node list as a fleet: one pool, one block per 32 nodes, each GPU its own NVLink
/// domain (the trace's nodes are PCIe boards).
pub fn fleet(path: &Path) -> Result<FleetSpec, SimError> {
    let rows = crate::openb::load_nodes(path)?;
    let pool = PoolId(0);
    let mut blocks = Vec::new();
    let mut nodes = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if i % 32 == 0 {
            blocks.push(Block {
                id: BlockId(blocks.len() as u32),
                name: format!("openb-b{}", i / 32),
                pool,
            });
        }
        let model = if r.gpus == 0 && r.model.is_empty() {
            GpuModel::new("none")?
        } else {
            GpuModel::new(&r.model).map_err(|e| SimError::Row {
                path: path.to_path_buf(),
                line: i as u64 + 2,
                field: "model".into(),
                reason: e.to_string(),
            })?
        };
        nodes.push(Node {
            id: NodeId(i as u32),
            name: r.name.clone(),
            block: BlockId(blocks.len() as u32 - 1),
            gpu_model: model,
            gpus: r.gpus,
            gpu_memory: MemMib(0),
            nvlink_domain: 1,
            cpu: MilliCpu(r.cpu_milli),
            memory: MemMib(r.memory_mib),
            labels: Default::default(),
            state: NodeState::Up,
        });
    }
    let fleet = Fleet::new(
        vec![Pool {
            id: pool,
            name: "openb".into(),
            owner: None,
            lending: Default::default(),
        }],
        blocks,
        nodes,
    )
    .map_err(|e| SimError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if fleet.total_gpus() == 0 {
        return Err(SimError::Row {
            path: path.to_path_buf(),
            line: 1,
            field: "gpu".into(),
            reason: "the node list has no GPUs".into(),
        });
    }
    Ok(FleetSpec {
        name: "openb".into(),
        path: path.to_path_buf(),
        fleet,
        owners: Default::default(),
    })
}
