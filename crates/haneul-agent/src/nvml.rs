//! The thin layer over NVML, through the `nvml-wrapper` crate, which loads the library at run
//! time (so building needs no GPU or driver). It only gathers facts and forwards events: what
//! they mean is decided by pure functions in [`crate::gpus`], [`crate::health`] and
//! [`crate::xid`].

use crate::gpus::{NvLinkFact, NvmlDevice, PciAddr};
use crate::health::{GpuProbe, GpuReading};
use crate::sharing::MigFact;
use crate::xid::{GpuEvent, XidEvent};
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use std::ffi::{OsStr, OsString};
use std::sync::mpsc::Sender;
use std::time::Duration;

/// Links asked about per GPU: NVML's `NVML_NVLINK_MAX_LINKS`. Links past a GPU's own count
/// answer with an error and are skipped.
const MAX_LINKS: u32 = 18;

/// How long one wait for an event lasts, so that the watcher notices it should stop.
const EVENT_WAIT_MS: u32 = 500;

/// Loads `library` and initialises NVML; the error says why in words.
pub fn open(library: &OsStr) -> Result<Nvml, String> {
    let lib = library.to_string_lossy();
    Nvml::builder()
        .lib_path(library)
        .init()
        .map_err(|e| match e {
            NvmlError::LibloadingError(e) => format!("{lib} cannot be loaded ({e})"),
            NvmlError::DriverNotLoaded => {
                format!("{lib} is loaded but the NVIDIA driver is not running")
            }
            NvmlError::NoPermission => format!("{lib}: no permission to talk to the driver"),
            e => format!("{lib}: cannot initialise NVML: {e}"),
        })
}

fn addr(p: &nvml_wrapper::struct_wrappers::device::PciInfo) -> PciAddr {
    PciAddr {
        domain: p.domain,
        bus: p.bus,
        device: p.device,
    }
}

/// What NVML tells of a node's GPUs.
#[derive(Debug, Default)]
pub struct NvmlFacts {
    /// Every physical GPU.
    pub devices: Vec<NvmlDevice>,
    /// Every NVLink of each that answers.
    pub links: Vec<NvLinkFact>,
    /// Indexes of the GPUs whose MIG mode is on.
    pub mig_enabled: Vec<u32>,
    /// Every MIG instance of those GPUs.
    pub mig: Vec<MigFact>,
}

/// Every GPU NVML sees, every NVLink of each that answers, and the MIG instances of GPUs in
/// MIG mode.
pub fn gather(library: &OsStr) -> Result<NvmlFacts, String> {
    let nvml = open(library)?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("cannot count the GPUs: {e}"))?;
    let mut facts = NvmlFacts::default();
    for i in 0..count {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| format!("GPU {i}: {e}"))?;
        let index = d.index().unwrap_or(i);
        let name = d.name().map_err(|e| format!("GPU {i}: no name: {e}"))?;
        // A GPU without MIG support answers NotSupported: it is a whole GPU.
        if d.mig_mode().is_ok_and(|m| m.current == 1) {
            facts.mig_enabled.push(index);
            let slots = d
                .mig_device_count()
                .map_err(|e| format!("GPU {i}: cannot count its MIG devices: {e}"))?;
            for slot in 0..slots {
                // Slots without an instance answer NotFound.
                let Ok(m) = d.mig_device_by_index(slot) else {
                    continue;
                };
                facts.mig.push(MigFact {
                    parent: index,
                    parent_name: name.clone(),
                    name: m
                        .name()
                        .map_err(|e| format!("GPU {i} MIG device {slot}: no name: {e}"))?,
                    uuid: m
                        .uuid()
                        .map_err(|e| format!("GPU {i} MIG device {slot}: no UUID: {e}"))?,
                    memory_bytes: m.memory_info().ok().map(|m| m.total),
                });
            }
        }
        facts.devices.push(NvmlDevice {
            index,
            name,
            uuid: d.uuid().map_err(|e| format!("GPU {i}: no UUID: {e}"))?,
            memory_bytes: d.memory_info().ok().map(|m| m.total),
            pci: d.pci_info().ok().as_ref().map(addr),
        });
        for link in 0..MAX_LINKS {
            let l = d.link_wrapper_for(link);
            // Not supported (no NVLink) or past the GPU's link count.
            let Ok(active) = l.is_active() else { continue };
            let remote = if active {
                l.remote_pci_info().ok().as_ref().map(addr)
            } else {
                None
            };
            facts.links.push(NvLinkFact {
                gpu: index,
                link,
                active,
                remote,
            });
        }
    }
    Ok(facts)
}

/// Temperature and ECC readings through NVML.
pub struct NvmlProbe {
    nvml: Nvml,
}

impl NvmlProbe {
    /// Opens NVML from `library` for the health checks.
    pub fn open(library: &OsStr) -> Result<NvmlProbe, String> {
        Ok(NvmlProbe {
            nvml: open(library)?,
        })
    }
}

impl GpuProbe for NvmlProbe {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn readings(&mut self, _timeout: Duration) -> Result<Vec<GpuReading>, String> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| format!("nvml: cannot count the GPUs: {e}"))?;
        let mut readings = Vec::new();
        for i in 0..count {
            let d = match self.nvml.device_by_index(i) {
                Ok(d) => d,
                Err(e) => {
                    readings.push(GpuReading {
                        index: i,
                        error: Some(format!("nvml: {e}")),
                        ..GpuReading::default()
                    });
                    continue;
                }
            };
            let temperature = d.temperature(TemperatureSensor::Gpu);
            let ecc = d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile);
            // A GPU that stopped answering is a failure; a counter the GPU does not have
            // (ECC off, no sensor) is not.
            let error = [temperature.as_ref().err(), ecc.as_ref().err()]
                .into_iter()
                .flatten()
                .find(|e| !matches!(e, NvmlError::NotSupported))
                .map(|e| format!("nvml: {e}"));
            readings.push(GpuReading {
                index: i,
                uuid: d.uuid().unwrap_or_default(),
                temperature_c: temperature.ok(),
                uncorrected_ecc: ecc.ok(),
                error,
            });
        }
        Ok(readings)
    }
}

/// Starts a thread that watches NVML's critical XID events on every GPU that supports them and
/// sends them on `events`, with a note saying what it watches (or why it cannot). It waits
/// [`EVENT_WAIT_MS`] at a time and ends when `stop()` says so or `events` is closed.
pub fn watch_xids(
    library: OsString,
    stop: impl Fn() -> bool + Send + 'static,
    events: Sender<GpuEvent>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Err(note) = watch(&library, &stop, &events) {
            let _ = events.send(GpuEvent::Note(format!("XID events not watched: {note}")));
        }
    })
}

fn watch(
    library: &OsStr,
    stop: &dyn Fn() -> bool,
    events: &Sender<GpuEvent>,
) -> Result<(), String> {
    let nvml = open(library)?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("cannot count the GPUs: {e}"))?;
    let mut set = nvml
        .create_event_set()
        .map_err(|e| format!("cannot create an event set: {e}"))?;
    let (mut watched, mut unwatched) = (Vec::new(), Vec::new());
    for i in 0..count {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| format!("GPU {i}: {e}"))?;
        match d.supported_event_types() {
            Ok(t) if t.contains(EventTypes::CRITICAL_XID_ERROR) => {
                // A failed registration frees the set, so it ends the watch.
                set = d
                    .register_events(EventTypes::CRITICAL_XID_ERROR, set)
                    .map_err(|e| format!("GPU {i}: cannot register for XID events: {e}"))?;
                watched.push(i.to_string());
            }
            Ok(_) => unwatched.push(format!("GPU {i} (no XID events)")),
            Err(e) => unwatched.push(format!("GPU {i} ({e})")),
        }
    }
    if watched.is_empty() {
        return Err(format!("no GPU offers them: {}", unwatched.join(", ")));
    }
    let mut note = format!("watching XID events of GPUs {}", watched.join(", "));
    if !unwatched.is_empty() {
        note.push_str(&format!("; not of {}", unwatched.join(", ")));
    }
    if events.send(GpuEvent::Note(note)).is_err() {
        return Ok(());
    }
    while !stop() {
        let event = match set.wait(EVENT_WAIT_MS) {
            Ok(data) => match data.event_data {
                Some(XidError::Value(xid)) => GpuEvent::Xid(XidEvent {
                    gpu: data.device.index().ok(),
                    uuid: data.device.uuid().unwrap_or_default(),
                    xid,
                }),
                _ => GpuEvent::Note(format!(
                    "GPU {}: a critical XID event without its code",
                    data.device
                        .index()
                        .map_or_else(|_| "?".to_string(), |i| i.to_string())
                )),
            },
            Err(NvmlError::Timeout) => continue,
            Err(NvmlError::GpuLost) => {
                let lost = GpuEvent::Lost(
                    "a GPU has fallen off the bus (NVML: GPU is lost while waiting for XID events)"
                        .to_string(),
                );
                let _ = events.send(lost);
                // Waiting again would only repeat it.
                return Ok(());
            }
            Err(e) => return Err(format!("waiting for events: {e}")),
        };
        if events.send(event).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
