//! Where public trace files are found, and what to tell a user who does not have them.
//!
//! Trace files belong to their publishers and stay out of this repository. Everything that reads
//! one takes a trace directory: `--traces DIR`, else `HANEUL_TRACES`, else `../shared/traces`
//! when it exists (a checkout beside the project's shared folder, as in CI). A known trace that is
//! missing is an error naming the public repository and path to download it from, its licence
//! and its citation; `scripts/fetch-traces` downloads them all.

use crate::SimError;
use std::path::{Path, PathBuf};

/// The environment variable naming the trace directory.
pub const ENV: &str = "HANEUL_TRACES";

/// The trace directory tried last, relative to the working directory.
pub const BESIDE_CHECKOUT: &str = "../shared/traces";

/// A public trace file the project knows how to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownTrace {
    /// Path under the trace directory.
    pub rel_path: &'static str,
    /// Public repository it comes from (`owner/name` on GitHub).
    pub repository: &'static str,
    /// Branch or commit of that repository.
    pub revision: &'static str,
    /// Path of the file in that repository.
    pub source_path: &'static str,
    /// Licence under which it is published.
    pub licence: &'static str,
    /// What to cite when publishing results made with it.
    pub citation: &'static str,
}

const OPENB_LICENCE: &str =
    "published by Alibaba in alibaba/clusterdata (see its README for terms)";
const OPENB_CITATION: &str = "Weng et al., \"Beware of Fragmentation: Scheduling GPU-Sharing \
                              Workloads with Fragmentation Gradient Descent\", USENIX ATC 2023";
const FGD_LICENCE: &str = "Apache-2.0";
const PHILLY_LICENCE: &str = "Apache-2.0 (the adaptdl artifact); the underlying trace CC BY 4.0";
const PHILLY_CITATION: &str = "Jeon et al., \"Analysis of Large-Scale Multi-Tenant GPU Clusters \
                               for DNN Training Workloads\", USENIX ATC 2019";

macro_rules! openb {
    ($file:literal) => {
        KnownTrace {
            rel_path: concat!("alibaba-gpu-v2023-openb/csv/", $file),
            repository: "alibaba/clusterdata",
            revision: "master",
            source_path: concat!("cluster-trace-gpu-v2023/csv/", $file),
            licence: OPENB_LICENCE,
            citation: OPENB_CITATION,
        }
    };
}

macro_rules! fgd_result {
    ($file:literal) => {
        KnownTrace {
            rel_path: concat!("alibaba-gpu-v2023-openb/fgd_expected_results/", $file),
            repository: "hkust-adsl/kubernetes-scheduler-simulator",
            revision: "master",
            source_path: concat!("experiments/analysis/expected_results/", $file),
            licence: FGD_LICENCE,
            citation: OPENB_CITATION,
        }
    };
}

/// Every trace file the project reads, with where it comes from.
pub const KNOWN: &[KnownTrace] = &[
    openb!("openb_node_list_gpu_node.csv"),
    openb!("openb_node_list_all_node.csv"),
    openb!("openb_pod_list_default.csv"),
    openb!("openb_pod_list_cpu050.csv"),
    openb!("openb_pod_list_gpushare40.csv"),
    openb!("openb_pod_list_gpuspec10.csv"),
    openb!("openb_pod_list_multigpu20.csv"),
    fgd_result!("analysis_allo_discrete.csv"),
    fgd_result!("analysis_frag_discrete.csv"),
    fgd_result!("analysis_frag_ratio_discrete.csv"),
    KnownTrace {
        rel_path: "philly/philly.csv",
        repository: "petuum/adaptdl",
        revision: "osdi21-artifact",
        source_path: "simulator/traces/philly.csv",
        licence: PHILLY_LICENCE,
        citation: PHILLY_CITATION,
    },
];

impl KnownTrace {
    /// The address of the raw file in its public repository.
    pub fn url(&self) -> String {
        format!(
            "https://raw.githubusercontent.com/{}/{}/{}",
            self.repository, self.revision, self.source_path
        )
    }

    /// The sentence telling a user how to get this file.
    pub fn how_to_get(&self) -> String {
        format!(
            "download it from the public repository {} (path {}, {}) or run scripts/fetch-traces DIR; \
             licence: {}; cite: {}",
            self.repository,
            self.source_path,
            self.url(),
            self.licence,
            self.citation
        )
    }
}

/// The known trace whose path ends like `path` (by its last components), if any.
pub fn known(path: &Path) -> Option<&'static KnownTrace> {
    KNOWN
        .iter()
        .find(|t| path.ends_with(t.rel_path))
        .or_else(|| {
            let name = path.file_name()?;
            KNOWN
                .iter()
                .find(|t| Path::new(t.rel_path).file_name() == Some(name))
        })
}

/// The trace directory: `explicit`, else `$HANEUL_TRACES`, else `../shared/traces` when it
/// exists; `None` when none is given or present.
pub fn dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = explicit {
        return Some(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os(ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let beside = Path::new(BESIDE_CHECKOUT);
    beside.is_dir().then(|| beside.to_path_buf())
}

/// The file `rel` under the trace directory ([`dir`]), which must exist; otherwise an error that
/// says which directories were looked in and how to get the file.
pub fn locate(explicit: Option<&Path>, rel: &str) -> Result<PathBuf, SimError> {
    let Some(base) = dir(explicit) else {
        return Err(SimError::File {
            path: PathBuf::from(rel),
            reason: format!(
                "no trace directory: pass --traces DIR or set {ENV} (tried {BESIDE_CHECKOUT}); {}",
                hint(Path::new(rel))
            ),
        });
    };
    let path = base.join(rel);
    if path.is_file() {
        return Ok(path);
    }
    Err(missing(&path))
}

/// The error for a trace file that is not there, with how to get it when it is a known one.
pub fn missing(path: &Path) -> SimError {
    SimError::File {
        path: path.to_path_buf(),
        reason: format!("trace file not found; {}", hint(path)),
    }
}

/// Checks that `path` exists, turning a missing known trace into [`missing`]'s error.
pub fn require(path: &Path) -> Result<(), SimError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(missing(path))
    }
}

fn hint(path: &Path) -> String {
    match known(path) {
        Some(t) => t.how_to_get(),
        None => "it is not one of the public traces this project knows (scripts/fetch-traces lists them)"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_trace_is_found_by_its_tail_or_name() {
        let t = known(Path::new("/x/y/philly/philly.csv")).unwrap();
        assert_eq!(t.repository, "petuum/adaptdl");
        let t = known(Path::new("elsewhere/openb_pod_list_cpu050.csv")).unwrap();
        assert_eq!(
            t.source_path,
            "cluster-trace-gpu-v2023/csv/openb_pod_list_cpu050.csv"
        );
        assert!(known(Path::new("mine.csv")).is_none());
    }

    #[test]
    fn a_missing_trace_names_its_repository_licence_and_citation() {
        let dir = std::env::temp_dir().join(format!("haneul-traces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = locate(Some(&dir), "philly/philly.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("petuum/adaptdl"), "{e}");
        assert!(e.contains("simulator/traces/philly.csv"), "{e}");
        assert!(e.contains("CC BY 4.0"), "{e}");
        assert!(e.contains("Jeon et al."), "{e}");
        std::fs::create_dir_all(dir.join("philly")).unwrap();
        std::fs::write(dir.join("philly/philly.csv"), "timestamp\n").unwrap();
        assert_eq!(
            locate(Some(&dir), "philly/philly.csv").unwrap(),
            dir.join("philly/philly.csv")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_known_trace_has_a_licence_and_a_raw_address() {
        for t in KNOWN {
            assert!(!t.licence.is_empty() && !t.citation.is_empty(), "{t:?}");
            assert!(t.url().ends_with(t.source_path), "{t:?}");
        }
    }
}
