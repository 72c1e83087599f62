//! GPU inventory: simulated (`--simulate-gpus 8xH200`) or discovered, through NVML first and
//! `nvidia-smi` when NVML cannot be used.
//!
//! What NVML says is gathered as plain facts ([`NvmlDevice`], [`NvLinkFact`]) by the thin layer
//! in [`crate::nvml`]; turning them into an inventory, NVLink peers and the node's NVLink
//! domain size is done here by pure functions, so it is tested without a GPU.

use crate::{AgentError, Result};
use std::collections::BTreeMap;
use std::ffi::OsStr;
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
    /// The other GPUs this one reaches over an active NVLink, directly or through an NVSwitch
    /// (empty when there is none or the source cannot tell).
    pub nvlink_peers: Vec<u32>,
}

/// Where an inventory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// `--simulate-gpus`.
    Simulated,
    /// The NVIDIA Management Library.
    Nvml,
    /// The `nvidia-smi` program.
    NvidiaSmi,
    /// Nothing: no GPUs were found.
    #[default]
    None,
}

/// The GPUs of a node and, when empty, why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// The GPUs found.
    pub gpus: Vec<Gpu>,
    /// Why the inventory is empty (or how it was obtained, and why the sources tried before
    /// failed), for the node's status.
    pub note: Option<String>,
    /// Which source the GPUs come from.
    pub source: Source,
    /// GPUs per NVLink domain (GPU `i` is in domain `i / n`), when NVML told the NVLink
    /// topology.
    pub nvlink_domain: Option<u32>,
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
            nvlink_peers: Vec::new(),
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
            nvlink_peers: Vec::new(),
        });
    }
    Ok(gpus)
}

/// A PCI device address. The function number is left out: a GPU is function 0 of its device,
/// and NVLink's remote address names the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u32,
    /// Device number on the bus.
    pub device: u32,
}

/// What NVML says about one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlDevice {
    /// NVML's index (the same as CUDA's and `nvidia-smi`'s unless `CUDA_DEVICE_ORDER` says
    /// otherwise).
    pub index: u32,
    /// Model name, e.g. `NVIDIA H200`.
    pub name: String,
    /// `GPU-...`.
    pub uuid: String,
    /// Total memory in bytes, when NVML could tell.
    pub memory_bytes: Option<u64>,
    /// The GPU's own PCI address, when NVML could tell.
    pub pci: Option<PciAddr>,
}

/// What NVML says about one NVLink of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvLinkFact {
    /// Index of the GPU the link belongs to.
    pub gpu: u32,
    /// Link number on that GPU.
    pub link: u32,
    /// Whether the link is up.
    pub active: bool,
    /// The PCI address at the link's far end: another GPU, or an NVSwitch.
    pub remote: Option<PciAddr>,
}

/// The inventory NVML's facts describe: the GPUs (in index order) with their NVLink peers, and
/// the node's NVLink domain size ([`nvlink_domain_size`]).
pub fn inventory_from_nvml(devices: &[NvmlDevice], links: &[NvLinkFact]) -> (Vec<Gpu>, u32) {
    let mut devices: Vec<&NvmlDevice> = devices.iter().collect();
    devices.sort_by_key(|d| d.index);
    let peers = nvlink_peers(&devices, links);
    let components = nvlink_components(&devices, links);
    let gpus = devices
        .iter()
        .map(|d| Gpu {
            index: d.index,
            model: d.name.trim().to_string(),
            memory_mib: d.memory_bytes.map(|b| b / (1024 * 1024)),
            uuid: d.uuid.clone(),
            simulated: false,
            nvlink_peers: peers.get(&d.index).cloned().unwrap_or_default(),
        })
        .collect();
    let order: Vec<u32> = devices.iter().map(|d| d.index).collect();
    (gpus, nvlink_domain_size(&order, &components))
}

/// For each GPU index, the other GPUs it reaches over an active link: directly (the link's far
/// end is that GPU) or through a shared far end that is not a GPU (an NVSwitch). Sorted.
fn nvlink_peers(devices: &[&NvmlDevice], links: &[NvLinkFact]) -> BTreeMap<u32, Vec<u32>> {
    let by_addr: BTreeMap<PciAddr, u32> = devices
        .iter()
        .filter_map(|d| Some((d.pci?, d.index)))
        .collect();
    let mut peers: BTreeMap<u32, std::collections::BTreeSet<u32>> = BTreeMap::new();
    // Far ends that are not GPUs, with the GPUs linked to each.
    let mut switches: BTreeMap<PciAddr, Vec<u32>> = BTreeMap::new();
    for l in links.iter().filter(|l| l.active) {
        let Some(remote) = l.remote else { continue };
        match by_addr.get(&remote) {
            Some(&other) if other != l.gpu => {
                peers.entry(l.gpu).or_default().insert(other);
                peers.entry(other).or_default().insert(l.gpu);
            }
            Some(_) => {}
            None => switches.entry(remote).or_default().push(l.gpu),
        }
    }
    for members in switches.values() {
        for &a in members {
            for &b in members.iter().filter(|&&b| b != a) {
                peers.entry(a).or_default().insert(b);
            }
        }
    }
    peers
        .into_iter()
        .map(|(g, set)| (g, set.into_iter().collect()))
        .collect()
}

/// The NVLink domains: the connected components of the graph whose vertices are the GPUs and
/// the far ends of their active links, one component per GPU index (its smallest member's
/// index), so GPUs joined through an NVSwitch share one.
fn nvlink_components(devices: &[&NvmlDevice], links: &[NvLinkFact]) -> BTreeMap<u32, u32> {
    // Vertices: GPUs by index, then far ends that are not GPUs.
    let by_addr: BTreeMap<PciAddr, u32> = devices
        .iter()
        .filter_map(|d| Some((d.pci?, d.index)))
        .collect();
    let mut vertex: BTreeMap<Endpoint, usize> = BTreeMap::new();
    for d in devices {
        let n = vertex.len();
        vertex.entry(Endpoint::Gpu(d.index)).or_insert(n);
    }
    let mut edges = Vec::new();
    for l in links.iter().filter(|l| l.active) {
        let Some(remote) = l.remote else { continue };
        let far = match by_addr.get(&remote) {
            Some(&g) => Endpoint::Gpu(g),
            None => Endpoint::Other(remote),
        };
        let n = vertex.len();
        let b = *vertex.entry(far).or_insert(n);
        if let Some(&a) = vertex.get(&Endpoint::Gpu(l.gpu)) {
            edges.push((a, b));
        }
    }
    let mut parent: Vec<usize> = (0..vertex.len()).collect();
    fn root(parent: &mut [usize], mut v: usize) -> usize {
        while parent[v] != v {
            parent[v] = parent[parent[v]];
            v = parent[v];
        }
        v
    }
    for (a, b) in edges {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        // The smaller vertex wins, so a component's root is its first GPU.
        parent[ra.max(rb)] = ra.min(rb);
    }
    devices
        .iter()
        .map(|d| {
            let r = root(&mut parent, vertex[&Endpoint::Gpu(d.index)]);
            (d.index, devices[r].index)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Gpu(u32),
    Other(PciAddr),
}

/// The NVLink domain size the server's model can hold: it puts GPU `i` in domain `i / n`, so
/// this is the largest `n` dividing the GPU count for which every run of `n` consecutive GPUs
/// (in index order) lies in one NVLink component. Components that are not such equal runs
/// shrink it (to 1 at worst), so the server never assumes an NVLink that is not there.
pub fn nvlink_domain_size(order: &[u32], component: &BTreeMap<u32, u32>) -> u32 {
    let n = order.len();
    let comp = |i: usize| component.get(&order[i]).copied().unwrap_or(order[i]);
    (1..=n.max(1))
        .rev()
        .filter(|d| n.is_multiple_of(*d))
        .find(|&d| (0..n).all(|i| comp(i) == comp(i - i % d)))
        .unwrap_or(1) as u32
}

/// The GPUs a node reports from what NVML told: its whole GPUs, or, when MIG is on, its MIG
/// instances as GPUs of their own ([`crate::sharing::mig_inventory`]; NVLink does not join
/// instances, so the domain is 1). A node reports one GPU model, as the scheduler keeps one per
/// node, so MIG must be on for every GPU with one profile throughout (NVIDIA's "single"
/// strategy); a mixed node is refused with the fix in words rather than reported wrongly.
pub fn node_inventory(
    facts: &crate::nvml::NvmlFacts,
) -> std::result::Result<(Vec<Gpu>, u32), String> {
    if facts.mig_enabled.is_empty() {
        return Ok(inventory_from_nvml(&facts.devices, &facts.links));
    }
    let whole: Vec<String> = facts
        .devices
        .iter()
        .filter(|d| !facts.mig_enabled.contains(&d.index))
        .map(|d| d.index.to_string())
        .collect();
    if !whole.is_empty() {
        return Err(format!(
            "GPUs {} have MIG mode off while others have it on; a node reports one kind of GPU: \
             partition every GPU with the same MIG profile, or turn MIG off on all of them",
            whole.join(",")
        ));
    }
    let gpus = crate::sharing::mig_inventory(&facts.mig).map_err(|e| e.to_string())?;
    if gpus.is_empty() {
        return Err(
            "MIG mode is on but no MIG instance exists; create instances (nvidia-smi mig -cgi \
             ... -C) or turn MIG off"
                .into(),
        );
    }
    let models: std::collections::BTreeSet<&str> = gpus.iter().map(|g| g.model.as_str()).collect();
    if models.len() > 1 {
        return Err(format!(
            "MIG instances of several profiles ({}); a node reports one GPU model: give every GPU \
             the same profile",
            models.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((gpus, 1))
}

/// The library NVML is loaded from unless told otherwise: the versioned name, which the driver
/// installs (the unversioned `libnvidia-ml.so` comes only with development packages).
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Discovers the node's GPUs: through NVML ([`NVML_LIBRARY`]), else `nvidia-smi` on `PATH`,
/// else none. The note says which source was used and why each one before it failed.
pub fn discover() -> Inventory {
    discover_with(OsStr::new(NVML_LIBRARY), "nvidia-smi")
}

/// As [`discover`], with the NVML library to load and the `nvidia-smi` program to run.
pub fn discover_with(nvml_library: &OsStr, nvidia_smi: &str) -> Inventory {
    let nvml_failure = match crate::nvml::gather(nvml_library) {
        Ok(facts) if !facts.devices.is_empty() => {
            let (gpus, domain) = match node_inventory(&facts) {
                Ok(found) => found,
                Err(why) => {
                    return Inventory {
                        gpus: Vec::new(),
                        note: Some(format!("no GPUs reported: {why}")),
                        source: Source::Nvml,
                        nvlink_domain: None,
                    };
                }
            };
            return Inventory {
                note: Some(format!(
                    "discovered through NVML ({}): {} GPUs, NVLink domain {domain}",
                    nvml_library.to_string_lossy(),
                    gpus.len()
                )),
                gpus,
                source: Source::Nvml,
                nvlink_domain: Some(domain),
            };
        }
        Ok(_) => "NVML reports no GPUs".to_string(),
        Err(e) => e,
    };
    match discover_nvidia_smi(nvidia_smi) {
        Ok(gpus) => Inventory {
            gpus,
            note: Some(format!(
                "discovered through {nvidia_smi} (nvml: {nvml_failure})"
            )),
            source: Source::NvidiaSmi,
            nvlink_domain: None,
        },
        Err(smi_failure) => Inventory {
            gpus: Vec::new(),
            note: Some(format!(
                "no GPUs discovered: nvml: {nvml_failure}; nvidia-smi: {smi_failure}"
            )),
            source: Source::None,
            nvlink_domain: None,
        },
    }
}

/// The GPUs `nvidia-smi` lists, or why there are none.
fn discover_nvidia_smi(program: &str) -> std::result::Result<Vec<Gpu>, String> {
    let output = match Command::new(program).args(NVIDIA_SMI_ARGS).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{program} not found"));
        }
        Err(e) => return Err(format!("cannot run {program}: {e}")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{program} failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    match parse_nvidia_smi(&String::from_utf8_lossy(&output.stdout)) {
        Ok(gpus) if gpus.is_empty() => Err(format!("{program} reported no GPUs")),
        Ok(gpus) => Ok(gpus),
        Err(e) => Err(e.to_string()),
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

    fn dev(index: u32, bus: u32) -> NvmlDevice {
        NvmlDevice {
            index,
            name: "NVIDIA H200".into(),
            uuid: format!("GPU-{index}"),
            memory_bytes: Some(150_754_820_096),
            pci: Some(PciAddr {
                domain: 0,
                bus,
                device: 0,
            }),
        }
    }

    fn link(gpu: u32, link: u32, active: bool, bus: u32) -> NvLinkFact {
        NvLinkFact {
            gpu,
            link,
            active,
            remote: Some(PciAddr {
                domain: 0,
                bus,
                device: 0,
            }),
        }
    }

    /// 8 GPUs on buses 0x10..0x17, each linked to all four NVSwitches (buses 0xa0..0xa3), as
    /// on an HGX H200 board.
    #[test]
    fn nvswitch_board_is_one_domain() {
        let devices: Vec<_> = (0..8).map(|i| dev(i, 0x10 + i)).collect();
        let links: Vec<_> = (0..8)
            .flat_map(|g| (0..18).map(move |l| link(g, l, true, 0xa0 + l % 4)))
            .collect();
        let (gpus, domain) = inventory_from_nvml(&devices, &links);
        assert_eq!(domain, 8);
        assert_eq!(gpus[3].nvlink_peers, vec![0, 1, 2, 4, 5, 6, 7]);
        assert_eq!(gpus[0].memory_mib, Some(143_771));
        assert_eq!(gpus[0].model, "NVIDIA H200");
    }

    /// Two 4-GPU islands of direct links (0-1-2-3 and 4-5-6-7, as rings), plus an inactive
    /// link from 3 to 4 that must not join them.
    #[test]
    fn direct_link_islands_give_their_size() {
        let devices: Vec<_> = (0..8).map(|i| dev(i, 0x10 + i)).collect();
        let mut links = Vec::new();
        for base in [0, 4] {
            for k in 0..4 {
                let (a, b) = (base + k, base + (k + 1) % 4);
                links.push(link(a, 0, true, 0x10 + b));
                links.push(link(b, 1, true, 0x10 + a));
            }
        }
        links.push(link(3, 2, false, 0x14));
        let (gpus, domain) = inventory_from_nvml(&devices, &links);
        assert_eq!(domain, 4);
        assert_eq!(gpus[0].nvlink_peers, vec![1, 3]);
        assert_eq!(gpus[5].nvlink_peers, vec![4, 6]);
    }

    /// Islands that are not equal runs of consecutive indices shrink the domain so that no run
    /// spans two islands: {0,2} and {1,3} allow only 1; {0,1,2} and {3} allow only 1 too;
    /// PCIe GPUs without NVLink (no active link) are domains of 1.
    #[test]
    fn uneven_islands_shrink_the_domain() {
        let devices: Vec<_> = (0..4).map(|i| dev(i, 0x10 + i)).collect();
        let interleaved = [link(0, 0, true, 0x12), link(1, 0, true, 0x13)];
        assert_eq!(inventory_from_nvml(&devices, &interleaved).1, 1);
        let three = [link(0, 0, true, 0x11), link(1, 1, true, 0x12)];
        assert_eq!(inventory_from_nvml(&devices, &three).1, 1);
        let pairs = [link(0, 0, true, 0x11), link(2, 0, true, 0x13)];
        assert_eq!(inventory_from_nvml(&devices, &pairs).1, 2);
        let down = [link(0, 0, false, 0x11)];
        let (gpus, domain) = inventory_from_nvml(&devices, &down);
        assert_eq!(domain, 1);
        assert!(gpus.iter().all(|g| g.nvlink_peers.is_empty()));
        let (one, domain) = inventory_from_nvml(&devices[..1], &[]);
        assert_eq!((one.len(), domain), (1, 1));
    }

    /// The real chain on any machine: a library that cannot be loaded, then a program that
    /// does not exist; the note names both reasons.
    #[test]
    fn fallback_chain_names_each_failure() {
        let inv = discover_with(
            OsStr::new("/nonexistent/libnvidia-ml.so.1"),
            "/nonexistent/nvidia-smi",
        );
        assert!(inv.gpus.is_empty());
        assert_eq!(inv.source, Source::None);
        let note = inv.note.unwrap();
        assert!(
            note.starts_with(
                "no GPUs discovered: nvml: /nonexistent/libnvidia-ml.so.1 cannot be loaded ("
            ),
            "{note}"
        );
        assert!(
            note.ends_with("; nvidia-smi: /nonexistent/nvidia-smi not found"),
            "{note}"
        );
    }

    /// NVML unusable, `nvidia-smi` works: its GPUs, and the note says why NVML was not used.
    #[test]
    fn nvidia_smi_after_nvml_fails() {
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(
            &smi,
            "#!/bin/sh\necho \"0, NVIDIA H200, 143771, GPU-a\"\necho \"1, NVIDIA H200, 143771, GPU-b\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let inv = discover_with(
            OsStr::new("/nonexistent/libnvidia-ml.so.1"),
            smi.to_str().unwrap(),
        );
        assert_eq!(inv.source, Source::NvidiaSmi);
        assert_eq!(inv.gpus.len(), 2);
        assert_eq!(inv.gpus[1].uuid, "GPU-b");
        assert_eq!(inv.nvlink_domain, None);
        let note = inv.note.unwrap();
        assert!(note.starts_with("discovered through "), "{note}");
        assert!(
            note.contains("(nvml: /nonexistent/libnvidia-ml.so.1 cannot be loaded ("),
            "{note}"
        );
    }

    #[test]
    fn a_node_in_mig_mode_reports_its_instances_or_says_why_not() {
        use crate::nvml::NvmlFacts;
        use crate::sharing::MigFact;
        let mig = |parent: u32, profile: &str, uuid: &str| MigFact {
            parent,
            parent_name: "NVIDIA H200".into(),
            name: format!("NVIDIA H200 MIG {profile}"),
            uuid: uuid.into(),
            memory_bytes: Some(35 * 1024 * 1024 * 1024),
        };
        let whole = NvmlFacts {
            devices: vec![dev(0, 1), dev(1, 2)],
            ..NvmlFacts::default()
        };
        let (gpus, _) = node_inventory(&whole).unwrap();
        assert_eq!(gpus.len(), 2, "MIG off: the whole GPUs");

        let partitioned = NvmlFacts {
            devices: vec![dev(0, 1), dev(1, 2)],
            mig_enabled: vec![0, 1],
            mig: vec![
                mig(1, "2g.35gb", "MIG-c"),
                mig(0, "2g.35gb", "MIG-a"),
                mig(0, "2g.35gb", "MIG-b"),
            ],
            ..NvmlFacts::default()
        };
        let (gpus, domain) = node_inventory(&partitioned).unwrap();
        let got: Vec<(&str, &str)> = gpus
            .iter()
            .map(|g| (g.model.as_str(), g.uuid.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("H200-MIG-2g.35gb", "MIG-a"),
                ("H200-MIG-2g.35gb", "MIG-b"),
                ("H200-MIG-2g.35gb", "MIG-c")
            ]
        );
        assert_eq!(domain, 1, "NVLink does not join MIG instances");

        let half = NvmlFacts {
            mig_enabled: vec![0],
            mig: vec![mig(0, "2g.35gb", "MIG-a")],
            ..partitioned
        };
        let e = node_inventory(&half).unwrap_err();
        assert!(e.contains("GPUs 1 have MIG mode off"), "{e}");
        let mixed = NvmlFacts {
            devices: vec![dev(0, 1), dev(1, 2)],
            links: Vec::new(),
            mig_enabled: vec![0, 1],
            mig: vec![mig(0, "2g.35gb", "MIG-a"), mig(1, "1g.18gb", "MIG-b")],
        };
        let e = node_inventory(&mixed).unwrap_err();
        assert!(
            e.contains("several profiles") && e.contains("1g.18gb"),
            "{e}"
        );
        let empty = NvmlFacts {
            mig: Vec::new(),
            ..mixed
        };
        assert!(
            node_inventory(&empty)
                .unwrap_err()
                .contains("no MIG instance")
        );
    }
}
