//! Fleet files (TOML): the pools of a centre, each with an owner, a GPU model, a node count, GPUs
//! per node, the NVLink domain and the network block size. This module owns turning that file into
//! the engine's [`Fleet`]; docs/simulator.md documents the format.

use crate::catalogue::Catalogue;
use crate::error::{SimError, line_of, toml_error};
use haneul_model::{
    Block, BlockId, Fleet, GpuModel, Lending, MemMib, MilliCpu, Node, NodeId, NodeState, Pool,
    PoolId,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    pools: Vec<toml::Spanned<PoolFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    name: String,
    /// The organisation that funded the pool; absent for the centre's own GPUs.
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    lending: Lending,
    gpu_model: String,
    nodes: u32,
    gpus_per_node: u32,
    /// GPUs per NVLink domain; defaults to the whole node (an HGX board).
    #[serde(default)]
    nvlink_domain: Option<u32>,
    /// Nodes under one network leaf; defaults to 32.
    #[serde(default)]
    nodes_per_block: Option<u32>,
    #[serde(default = "default_cpu")]
    cpus_per_node: u64,
    #[serde(default = "default_mem")]
    memory_gib_per_node: u64,
    #[serde(default = "default_gpu_mem")]
    gpu_memory_gib: u64,
}

fn default_cpu() -> u64 {
    128
}
fn default_mem() -> u64 {
    2048
}
fn default_gpu_mem() -> u64 {
    80
}

/// A fleet read from a file, with what the reports need beside the engine's view.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub name: String,
    pub path: PathBuf,
    pub fleet: Fleet,
    /// Pool owners by name, for tenants that fund a pool (`lending = "owner-only"`).
    pub owners: BTreeMap<PoolId, String>,
}

impl FleetSpec {
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<FleetSpec, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        FleetSpec::parse(&text, path, catalogue)
    }

    pub fn parse(text: &str, path: &Path, catalogue: &Catalogue) -> Result<FleetSpec, SimError> {
        let file: FleetFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let mut pools = Vec::new();
        let mut blocks = Vec::new();
        let mut nodes = Vec::new();
        let mut owners = BTreeMap::new();
        for (pi, spanned) in file.pools.iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let p = spanned.get_ref();
            let bad = |field: &str, reason: String| SimError::Row {
                path: path.to_path_buf(),
                line,
                field: format!("pools.{field}"),
                reason,
            };
            let model = GpuModel::new(&p.gpu_model).map_err(|e| bad("gpu_model", e.to_string()))?;
            if p.gpus_per_node > 0 && catalogue.get(model.as_str()).is_none() {
                return Err(bad(
                    "gpu_model",
                    format!(
                        "unknown GPU model `{model}`; the catalogue ({}) has {}",
                        catalogue.source.display(),
                        catalogue.names()
                    ),
                ));
            }
            let domain = p.nvlink_domain.unwrap_or(p.gpus_per_node);
            if p.gpus_per_node > 0 && (domain == 0 || domain > p.gpus_per_node) {
                return Err(bad(
                    "nvlink_domain",
                    format!("must be 1 to gpus_per_node ({})", p.gpus_per_node),
                ));
            }
            let per_block = p.nodes_per_block.unwrap_or(32);
            if per_block == 0 {
                return Err(bad("nodes_per_block", "must be at least 1".into()));
            }
            let pool = PoolId(pi as u32);
            pools.push(Pool {
                id: pool,
                name: p.name.clone(),
                owner: None,
                lending: p.lending,
            });
            if let Some(o) = &p.owner {
                owners.insert(pool, o.clone());
            }
            for n in 0..p.nodes {
                if n % per_block == 0 {
                    blocks.push(Block {
                        id: BlockId(blocks.len() as u32),
                        name: format!("{}-b{}", p.name, n / per_block),
                        pool,
                    });
                }
                let block = BlockId(blocks.len() as u32 - 1);
                nodes.push(Node {
                    id: NodeId(nodes.len() as u32),
                    name: format!("{}-n{n}", p.name),
                    block,
                    gpu_model: model.clone(),
                    gpus: p.gpus_per_node,
                    gpu_memory: MemMib(p.gpu_memory_gib * 1024),
                    nvlink_domain: domain.max(1).min(p.gpus_per_node.max(1)),
                    cpu: MilliCpu::cores(p.cpus_per_node),
                    memory: MemMib(p.memory_gib_per_node * 1024),
                    labels: Default::default(),
                    state: NodeState::Up,
                });
            }
        }
        let fleet = Fleet::new(pools, blocks, nodes).map_err(|e| SimError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if fleet.total_gpus() == 0 {
            let line = file
                .pools
                .first()
                .map(|p| line_of(text, p.span().start))
                .unwrap_or(1);
            return Err(SimError::Row {
                path: path.to_path_buf(),
                line,
                field: "pools".into(),
                reason: "the fleet has no GPUs; add a pool with nodes and gpus_per_node above 0"
                    .into(),
            });
        }
        Ok(FleetSpec {
            name: file.name.unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            path: path.to_path_buf(),
            fleet,
            owners,
        })
    }

    pub fn total_gpus(&self) -> u64 {
        self.fleet.total_gpus()
    }

    /// The most GPUs any node holds, for splitting large trace jobs into per-node tasks.
    pub fn max_gpus_per_node(&self) -> u32 {
        self.fleet.nodes.iter().map(|n| n.gpus).max().unwrap_or(0)
    }

    /// "2496 x H100" style summary.
    pub fn describe(&self) -> String {
        let mut by_model: BTreeMap<&str, u64> = BTreeMap::new();
        for n in &self.fleet.nodes {
            *by_model.entry(n.gpu_model.as_str()).or_default() += n.gpus as u64;
        }
        by_model
            .iter()
            .filter(|(_, g)| **g > 0)
            .map(|(m, g)| format!("{g} x {m}"))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_become_blocks_and_nodes() {
        let text = r#"
name = "t"
[[pools]]
name = "gov"
gpu_model = "H200"
nodes = 5
gpus_per_node = 8
nodes_per_block = 2
"#;
        let f =
            FleetSpec::parse(text, Path::new("f.toml"), &Catalogue::default_catalogue()).unwrap();
        assert_eq!(f.fleet.nodes.len(), 5);
        assert_eq!(f.fleet.blocks.len(), 3);
        assert_eq!(f.total_gpus(), 40);
        assert_eq!(f.describe(), "40 x H200");
    }

    #[test]
    fn a_fleet_without_gpus_is_refused_with_file_line_and_field() {
        let text = "name = \"t\"\n\n[[pools]]\nname = \"cpu\"\ngpu_model = \"H100\"\nnodes = 4\ngpus_per_node = 0\n";
        let err = FleetSpec::parse(text, Path::new("f.toml"), &Catalogue::default_catalogue())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("f.toml:3: pools: the fleet has no GPUs"),
            "{err}"
        );
    }

    #[test]
    fn an_uncatalogued_model_is_refused() {
        let text = "[[pools]]\nname = \"x\"\ngpu_model = \"Z9\"\nnodes = 1\ngpus_per_node = 8\n";
        let err = FleetSpec::parse(text, Path::new("f.toml"), &Catalogue::default_catalogue())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("f.toml:1: pools.gpu_model: unknown GPU model `Z9`"),
            "{err}"
        );
    }
}
