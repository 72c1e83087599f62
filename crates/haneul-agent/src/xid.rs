//! XID events: the NVIDIA driver's error codes, what each means for the node, and the events a
//! watcher (NVML's event set in [`crate::nvml`], or a test) sends to the health checks
//! ([`crate::health::NodeHealth`]) over a channel.
//!
//! The classification follows NVIDIA's Xid catalogue ("Analyzing Xid Errors with the Xid
//! Catalog", docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, for Ampere and newer
//! GPUs), by its immediate-action column: codes whose remedy is a GPU reset, a node reboot or
//! servicing mean the GPU or node is broken and drain the node; codes whose remedy is to restart
//! or fix the application are the application's doing and are only logged. Codes the table
//! does not hold are logged as unclassified and do not drain, so an unfamiliar informational
//! code cannot take a node away; add them to [`XID_TABLE`] when a fleet shows they matter.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

/// One XID event from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidEvent {
    /// The GPU's index, when it could be read.
    pub gpu: Option<u32>,
    /// The GPU's UUID (`GPU-...`), empty when it could not be read.
    pub uuid: String,
    /// The XID code.
    pub xid: u64,
}

/// What a watcher sends to the health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuEvent {
    /// An XID event.
    Xid(XidEvent),
    /// A GPU became unreachable while the watcher waited (NVML's "GPU is lost"): the node is
    /// broken. The text says what was seen.
    Lost(String),
    /// Something for the log: what the watcher watches, or why it stopped.
    Note(String),
}

/// What an XID means for the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XidClass {
    /// The GPU or node is broken: the node is drained.
    Fatal,
    /// Caused by the application (or its ending): logged, the node stays up.
    Application,
    /// Not in [`XID_TABLE`]: logged, the node stays up.
    Unclassified,
}

/// The XIDs Haneul acts on: (code, class, meaning). See the module documentation for the
/// source.
pub const XID_TABLE: &[(u64, XidClass, &str)] = &[
    (
        13,
        XidClass::Application,
        "graphics engine exception, usually an application fault such as an out-of-range access",
    ),
    (
        31,
        XidClass::Application,
        "GPU memory page fault, usually an illegal address in the application",
    ),
    (
        43,
        XidClass::Application,
        "GPU stopped processing: the application hit a fault and its channel was reset",
    ),
    (
        45,
        XidClass::Application,
        "preemptive cleanup after an earlier error or the application being stopped",
    ),
    (48, XidClass::Fatal, "double-bit ECC error"),
    (
        63,
        XidClass::Fatal,
        "ECC page retirement or row remapping recorded; needs a GPU reset to take effect",
    ),
    (
        64,
        XidClass::Fatal,
        "ECC page retirement or row remapping failed",
    ),
    (74, XidClass::Fatal, "NVLink error"),
    (79, XidClass::Fatal, "GPU has fallen off the bus"),
    (92, XidClass::Fatal, "high single-bit ECC error rate"),
    (
        94,
        XidClass::Fatal,
        "contained ECC error; the row is remapped only by a GPU reset",
    ),
    (95, XidClass::Fatal, "uncontained ECC error"),
    (119, XidClass::Fatal, "GSP RPC timeout"),
    (120, XidClass::Fatal, "GSP error"),
];

/// The class and meaning of an XID code.
pub fn classify(xid: u64) -> (XidClass, &'static str) {
    XID_TABLE
        .iter()
        .find(|(code, _, _)| *code == xid)
        .map_or((XidClass::Unclassified, "not in Haneul's XID table"), |e| {
            (e.1, e.2)
        })
}

impl fmt::Display for XidEvent {
    /// `GPU 1 (GPU-...) XID 79: GPU has fallen off the bus`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gpu {
            Some(i) => write!(f, "GPU {i}")?,
            None => write!(f, "a GPU")?,
        }
        if !self.uuid.is_empty() {
            write!(f, " ({})", self.uuid)?;
        }
        write!(f, " XID {}: {}", self.xid, classify(self.xid).1)
    }
}

/// Sends an XID event for each line `GPU XID` (e.g. `1 79`) appended to `path` (which need not
/// exist yet), polling ten times a second until `stop()` says so or `events` is closed.
///
/// For tests and fire drills of the drain path only, on nodes with simulated GPUs
/// (`haneul agent --simulate-gpus ... --xid-events-file PATH`): real XID events come from NVML.
/// `uuids[i]` names GPU `i` in the events.
pub fn follow_file(
    path: PathBuf,
    uuids: Vec<String>,
    stop: impl Fn() -> bool + Send + 'static,
    events: Sender<GpuEvent>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut offset = 0u64;
        let mut pending = Vec::new();
        while !stop() {
            if let Ok(mut f) = std::fs::File::open(&path)
                && f.seek(SeekFrom::Start(offset)).is_ok()
                && let Ok(n) = f.read_to_end(&mut pending)
            {
                offset += n as u64;
            }
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let mut words = line.split_whitespace();
                let gpu = words.next().and_then(|w| w.parse::<u32>().ok());
                let xid = words.next().and_then(|w| w.parse::<u64>().ok());
                let event = match (gpu, xid, words.next()) {
                    (Some(gpu), Some(xid), None) => GpuEvent::Xid(XidEvent {
                        gpu: Some(gpu),
                        uuid: uuids.get(gpu as usize).cloned().unwrap_or_default(),
                        xid,
                    }),
                    _ if line.trim().is_empty() => continue,
                    _ => GpuEvent::Note(format!(
                        "{}: line {:?} ignored: expected `GPU XID`, e.g. `1 79`",
                        path.display(),
                        line.trim()
                    )),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_without_repeats_and_classifies() {
        assert!(XID_TABLE.windows(2).all(|w| w[0].0 < w[1].0));
        for code in [48, 63, 64, 74, 79, 92, 94, 95, 119, 120] {
            assert_eq!(classify(code).0, XidClass::Fatal, "XID {code}");
        }
        for code in [13, 31, 43, 45] {
            assert_eq!(classify(code).0, XidClass::Application, "XID {code}");
        }
        assert_eq!(classify(999).0, XidClass::Unclassified);
        let e = XidEvent {
            gpu: Some(1),
            uuid: "GPU-b".into(),
            xid: 79,
        };
        assert_eq!(
            e.to_string(),
            "GPU 1 (GPU-b) XID 79: GPU has fallen off the bus"
        );
    }
}
