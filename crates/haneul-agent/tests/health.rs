//! The node's health verdict with XID events sent through the same channel NVML's watcher
//! uses, the NVML layer's answers on this machine (no NVIDIA library), and the test-only
//! event file.

use haneul_agent::health::{GpuProbe, GpuReading, NodeHealth};
use haneul_agent::nvml;
use haneul_agent::xid::{self, GpuEvent, XidEvent};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn xid(gpu: u32, code: u64) -> GpuEvent {
    GpuEvent::Xid(XidEvent {
        gpu: Some(gpu),
        uuid: format!("GPU-{gpu}"),
        xid: code,
    })
}

#[test]
fn a_fatal_xid_fails_the_node_and_an_application_xid_does_not() {
    let (tx, rx) = mpsc::channel();
    let mut h = NodeHealth::new(Some("true".into()), None, 90).with_events(rx);
    assert_eq!(h.check(T).failure, None);

    tx.send(GpuEvent::Note("watching XID events of GPUs 0, 1".into()))
        .unwrap();
    tx.send(xid(2, 31)).unwrap();
    tx.send(xid(0, 999)).unwrap();
    let v = h.check(T);
    assert_eq!(v.failure, None, "{v:?}");
    assert_eq!(
        v.events.xids,
        vec![
            "GPU 2 (GPU-2) XID 31: GPU memory page fault, usually an illegal address in the \
             application (application error: node stays up)",
            "GPU 0 (GPU-0) XID 999: not in Haneul's XID table (node stays up)",
        ]
    );
    assert_eq!(v.events.notes, vec!["watching XID events of GPUs 0, 1"]);
    assert!(!v.events.fatal);

    tx.send(xid(1, 79)).unwrap();
    // The agent's loop polls between checks and reports at once on a fatal event.
    let p = h.poll_events();
    assert!(p.fatal, "{p:?}");
    let v = h.check(T);
    assert_eq!(
        v.failure.as_deref(),
        Some("GPU 1 (GPU-1) XID 79: GPU has fallen off the bus")
    );

    // It stays failed: repeats add nothing, later application errors do not clear it, and
    // the end of the watcher does not either.
    tx.send(xid(1, 79)).unwrap();
    tx.send(xid(3, 13)).unwrap();
    tx.send(xid(3, 48)).unwrap();
    drop(tx);
    let v = h.check(T);
    assert!(v.events.fatal);
    assert_eq!(
        v.failure.as_deref(),
        Some(
            "GPU 1 (GPU-1) XID 79: GPU has fallen off the bus; \
             GPU 3 (GPU-3) XID 48: double-bit ECC error"
        )
    );
    assert_eq!(v.events.xids.len(), 2, "{v:?}");
    assert_eq!(h.check(T).failure, v.failure);
}

/// GPU readings as a probe would give them.
struct Fixed(Vec<GpuReading>);

impl GpuProbe for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn readings(&mut self, _: Duration) -> Result<Vec<GpuReading>, String> {
        Ok(self.0.clone())
    }
}

#[test]
fn command_readings_and_xids_are_named_together() {
    let (tx, rx) = mpsc::channel();
    let readings = vec![
        GpuReading {
            index: 0,
            uuid: "GPU-0".into(),
            temperature_c: Some(91),
            uncorrected_ecc: Some(0),
            error: None,
        },
        GpuReading {
            index: 1,
            uuid: "GPU-1".into(),
            temperature_c: None,
            uncorrected_ecc: None,
            error: Some("nvml: GPU is lost".into()),
        },
        GpuReading {
            index: 2,
            uuid: "GPU-2".into(),
            temperature_c: Some(40),
            uncorrected_ecc: None,
            error: None,
        },
    ];
    let mut h =
        NodeHealth::new(Some("exit 4".into()), Some(Box::new(Fixed(readings))), 90).with_events(rx);
    tx.send(GpuEvent::Lost("a GPU has fallen off the bus".into()))
        .unwrap();
    assert_eq!(h.probe_name(), Some("fixed"));
    assert_eq!(
        h.check(T).failure.as_deref(),
        Some(
            "health command \"exit 4\" exited 4; GPU 0 (GPU-0) at 91 C (limit 90 C); \
             GPU 1 (GPU-1) cannot be read: nvml: GPU is lost; a GPU has fallen off the bus"
        )
    );
}

/// On this machine there is no NVIDIA library: NVML cannot be opened, and the watcher says so
/// and ends, closing its channel, which leaves the node healthy.
#[test]
fn nvml_without_its_library_says_why() {
    let missing = OsStr::new("/nonexistent/libnvidia-ml.so.1");
    let e = nvml::NvmlProbe::open(missing).err().unwrap();
    assert!(
        e.starts_with("/nonexistent/libnvidia-ml.so.1 cannot be loaded ("),
        "{e}"
    );
    let (tx, rx) = mpsc::channel();
    let watcher = nvml::watch_xids(OsString::from(missing), || false, tx);
    watcher.join().unwrap();
    let mut h = NodeHealth::new(None, None, 90).with_events(rx);
    let v = h.check(T);
    assert_eq!(v.failure, None);
    assert_eq!(v.events.notes.len(), 1, "{v:?}");
    assert!(
        v.events.notes[0]
            .starts_with("XID events not watched: /nonexistent/libnvidia-ml.so.1 cannot be loaded"),
        "{v:?}"
    );
}

/// The test-only event file: lines appended later are read, a bad line becomes a note, and
/// the follower stops when told.
#[test]
fn event_file_feeds_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xids");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let s = stop.clone();
    let follower = xid::follow_file(
        path.clone(),
        vec!["SIM-H200-0".into(), "SIM-H200-1".into()],
        move || s.load(Ordering::SeqCst),
        tx,
    );
    let mut h = NodeHealth::new(None, None, 90).with_events(rx);
    std::fs::write(&path, "0 13\nbogus\n").unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map(|mut f| std::io::Write::write_all(&mut f, b"1 95\n"))
        .unwrap()
        .unwrap();
    let until = Instant::now() + T;
    let (mut xids, mut notes) = (Vec::new(), Vec::new());
    let failure = loop {
        let v = h.check(T);
        xids.extend(v.events.xids);
        notes.extend(v.events.notes);
        if let Some(f) = v.failure {
            break f;
        }
        assert!(Instant::now() < until, "the fatal XID never arrived");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(failure, "GPU 1 (SIM-H200-1) XID 95: uncontained ECC error");
    assert_eq!(xids.len(), 2, "{xids:?}");
    assert!(
        xids[0].starts_with("GPU 0 (SIM-H200-0) XID 13: "),
        "{xids:?}"
    );
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].ends_with("line \"bogus\" ignored: expected `GPU XID`, e.g. `1 79`"));
    stop.store(true, Ordering::SeqCst);
    follower.join().unwrap();
}
