use crate::{BlockId, MemMib, MilliCpu, ModelError, NodeId, OrgId, PoolId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A GPU model (or accelerator class) name such as `H200` or `B200`. It doubles as the GPU class
/// that quotas and awards are counted in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GpuModel(String);

impl GpuModel {
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 32 {
            return Err(ModelError::invalid(
                "gpu_model",
                "must be 1 to 32 characters, for example `H200`",
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ModelError::invalid(
                "gpu_model",
                format!("`{name}` may hold only letters, digits, `-`, `_` and `.`"),
            ));
        }
        Ok(GpuModel(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GpuModel {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        GpuModel::new(&s)
    }
}

impl From<GpuModel> for String {
    fn from(m: GpuModel) -> String {
        m.0
    }
}

impl fmt::Display for GpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may run on a pool's GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lending {
    /// Any project may use the pool (the government's shared pools).
    #[default]
    Open,
    /// Only projects of the owning organisation (a partner's private share).
    OwnerOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: PoolId,
    pub name: String,
    /// The organisation that funded the pool; `None` for the centre's own GPUs.
    pub owner: Option<OrgId>,
    #[serde(default)]
    pub lending: Lending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub id: BlockId,
    pub name: String,
    pub pool: PoolId,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Up,
    /// Running work finishes; nothing new starts.
    Draining,
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub block: BlockId,
    pub gpu_model: GpuModel,
    pub gpus: u32,
    pub gpu_memory: MemMib,
    /// GPUs per NVLink domain: GPU `i` belongs to domain `i / nvlink_domain`. Equal to `gpus` for an
    /// HGX board where all GPUs share one NVSwitch fabric.
    pub nvlink_domain: u32,
    pub cpu: MilliCpu,
    pub memory: MemMib,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub state: NodeState,
}

/// The most GPUs one node may carry; the engine keeps per-GPU state in small fixed arrays.
pub const MAX_GPUS_PER_NODE: u32 = 64;

/// All pools, blocks and nodes of a centre. Built through [`Fleet::new`], which checks references.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    pub pools: Vec<Pool>,
    pub blocks: Vec<Block>,
    pub nodes: Vec<Node>,
}

impl Fleet {
    pub fn new(pools: Vec<Pool>, blocks: Vec<Block>, nodes: Vec<Node>) -> Result<Self, ModelError> {
        let fleet = Fleet {
            pools,
            blocks,
            nodes,
        };
        fleet.validate()?;
        Ok(fleet)
    }

    /// Checks that ids are unique, references resolve and every node is physically meaningful.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut pools = BTreeSet::new();
        for p in &self.pools {
            if !pools.insert(p.id) {
                return Err(ModelError::Duplicate {
                    field: "pools.id",
                    kind: "pool",
                    value: p.id.to_string(),
                });
            }
        }
        let mut blocks = BTreeSet::new();
        for b in &self.blocks {
            if !blocks.insert(b.id) {
                return Err(ModelError::Duplicate {
                    field: "blocks.id",
                    kind: "block",
                    value: b.id.to_string(),
                });
            }
            if !pools.contains(&b.pool) {
                return Err(ModelError::Unknown {
                    field: "blocks.pool",
                    kind: "pool",
                    value: b.pool.to_string(),
                });
            }
        }
        let mut nodes = BTreeSet::new();
        for n in &self.nodes {
            if !nodes.insert(n.id) {
                return Err(ModelError::Duplicate {
                    field: "nodes.id",
                    kind: "node",
                    value: n.id.to_string(),
                });
            }
            if !blocks.contains(&n.block) {
                return Err(ModelError::Unknown {
                    field: "nodes.block",
                    kind: "block",
                    value: n.block.to_string(),
                });
            }
            if n.gpus > MAX_GPUS_PER_NODE {
                return Err(ModelError::invalid(
                    "nodes.gpus",
                    format!(
                        "node `{}` has {} GPUs; at most {MAX_GPUS_PER_NODE} are supported",
                        n.name, n.gpus
                    ),
                ));
            }
            if n.gpus > 0 && (n.nvlink_domain == 0 || n.nvlink_domain > n.gpus) {
                return Err(ModelError::invalid(
                    "nodes.nvlink_domain",
                    format!(
                        "node `{}`: NVLink domain size must be between 1 and the node's {} GPUs",
                        n.name, n.gpus
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn total_gpus(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpus as u64).sum()
    }

    pub fn pool_of_block(&self, block: BlockId) -> Option<PoolId> {
        self.blocks.iter().find(|b| b.id == block).map(|b| b.pool)
    }

    /// GPU models present in the fleet, sorted.
    pub fn gpu_models(&self) -> Vec<GpuModel> {
        let set: BTreeSet<&GpuModel> = self
            .nodes
            .iter()
            .filter(|n| n.gpus > 0)
            .map(|n| &n.gpu_model)
            .collect();
        set.into_iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_model_names_are_checked() {
        assert!(GpuModel::new("H200").is_ok());
        assert!(GpuModel::new("V100M16").is_ok());
        assert!(GpuModel::new("").is_err());
        assert!(GpuModel::new("H 200").is_err());
        let err = serde_json::from_str::<GpuModel>("\"a/b\"");
        assert!(err.is_err());
    }
}
