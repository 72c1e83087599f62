//! GPU inventory: simulated (`--simulate-gpus 8xH200`) or discovered through `nvidia-smi`.

use crate::{AgentError, Result};
use std::process::Command;

/// One GPU of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// Index as seen by CUDA and `nvidia-smi` (the value put in `CUDA_VISIBLE_DEVICES`).
    pub index: u32,
    /// Model name, e.g. `H200` or `NVIDIA H200`.
    pub model: String,
    /// Total memory in MiB, when known.
    pub memory_mib: Option<u64>,
    /// Stable identifier (`GPU-...` for real GPUs, `SIM-...` for simulated ones).
    pub uuid: String,
    /// Whether this GPU is simulated.
    pub simulated: bool,
}

/// The GPUs of a node and, when empty, why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// The GPUs found.
    pub gpus: Vec<Gpu>,
    /// Why the inventory is empty (or how it was obtained), for the node's status.
    pub note: Option<String>,
}

/// Parses a `--simulate-gpus` value of the form `COUNTxMODEL` (e.g. `8xH200`). This is a
/// simulation for machines without GPUs: no process started with these GPUs can use a real one.
pub fn parse_simulated(value: &str) -> Result<Vec<Gpu>> {
    let err = |reason: &str| AgentError::SimulatedGpus {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (count, model) = value
        .trim()
        .split_once(['x', 'X'])
        .ok_or_else(|| err("missing 'x' between count and model"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| err("count is not a whole number"))?;
    if count == 0 {
        return Err(err("count must be at least 1"));
    }
    if count > 1024 {
        return Err(err("count must be at most 1024"));
    }
    let model = model.trim();
    if model.is_empty() {
        return Err(err("model is empty"));
    }
    if !model
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err("model may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok((0..count)
        .map(|index| Gpu {
            index,
            model: model.to_string(),
            memory_mib: None,
            uuid: format!("SIM-{model}-{index}"),
            simulated: true,
        })
        .collect())
}

/// The `nvidia-smi` arguments whose output [`parse_nvidia_smi`] reads.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,name,memory.total,uuid",
    "--format=csv,noheader,nounits",
];

/// Parses the output of `nvidia-smi` run with [`NVIDIA_SMI_ARGS`]: one `index, name, memory MiB, uuid`
/// line per GPU.
pub fn parse_nvidia_smi(text: &str) -> Result<Vec<Gpu>> {
    let mut gpus = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let err = |reason: &str| AgentError::NvidiaSmi {
            line: line.to_string(),
            reason: reason.to_string(),
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, name, memory, uuid] = fields[..] else {
            return Err(err("expected 4 comma-separated fields"));
        };
        let index = index
            .parse()
            .map_err(|_| err("index is not a whole number"))?;
        let memory_mib = match memory {
            "[N/A]" | "N/A" | "" => None,
            m => Some(m.parse().map_err(|_| err("memory is not a whole number"))?),
        };
        gpus.push(Gpu {
            index,
            model: name.to_string(),
            memory_mib,
            uuid: uuid.to_string(),
            simulated: false,
        });
    }
    Ok(gpus)
}

/// Discovers the node's GPUs through `nvidia-smi` (found on `PATH`). When it is absent or fails,
/// returns an empty inventory whose note says why.
pub fn discover() -> Inventory {
    discover_with("nvidia-smi")
}

/// As [`discover`], with the `nvidia-smi` program to run.
pub fn discover_with(program: &str) -> Inventory {
    let empty = |note: String| Inventory {
        gpus: Vec::new(),
        note: Some(note),
    };
    let output = match Command::new(program).args(NVIDIA_SMI_ARGS).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return empty(format!("{program} not found: no GPUs discovered"));
        }
        Err(e) => return empty(format!("cannot run {program}: {e}")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return empty(format!(
            "{program} failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    match parse_nvidia_smi(&String::from_utf8_lossy(&output.stdout)) {
        Ok(gpus) if gpus.is_empty() => empty(format!("{program} reported no GPUs")),
        Ok(gpus) => Inventory {
            gpus,
            note: Some(format!("discovered through {program}")),
        },
        Err(e) => empty(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_ok() {
        let g = parse_simulated("8xH200").unwrap();
        assert_eq!(g.len(), 8);
        assert_eq!(g[7].index, 7);
        assert_eq!(g[0].model, "H200");
        assert!(g.iter().all(|g| g.simulated));
    }

    #[test]
    fn simulated_errors_name_flag_and_form() {
        for bad in ["8H200", "0xH200", "xH200", "8x", "-1xH200", "8xH 200"] {
            let msg = parse_simulated(bad).unwrap_err().to_string();
            assert!(msg.contains("--simulate-gpus"), "{msg}");
            assert!(msg.contains("COUNTxMODEL"), "{msg}");
            assert!(msg.starts_with("invalid --simulate-gpus value"), "{msg}");
        }
    }

    #[test]
    fn nvidia_smi_sample() {
        let text = "0, NVIDIA H200, 143771, GPU-0d1e2f3a-aaaa-bbbb-cccc-000000000000\n\
                    1, NVIDIA H200, 143771, GPU-0d1e2f3a-aaaa-bbbb-cccc-000000000001\n\
                    2, NVIDIA A100-SXM4-80GB, [N/A], GPU-x\n";
        let g = parse_nvidia_smi(text).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g[1].index, 1);
        assert_eq!(g[1].model, "NVIDIA H200");
        assert_eq!(g[1].memory_mib, Some(143771));
        assert_eq!(g[2].memory_mib, None);
        assert!(!g[0].simulated);
        assert!(parse_nvidia_smi("0, H200, 1").is_err());
        assert!(parse_nvidia_smi("a, H200, 1, u").is_err());
        assert!(parse_nvidia_smi("").unwrap().is_empty());
    }

    #[test]
    fn absent_nvidia_smi_gives_reason() {
        let inv = discover_with("/nonexistent/nvidia-smi");
        assert!(inv.gpus.is_empty());
        assert!(inv.note.unwrap().contains("not found"));
    }
}
