//! Prometheus metrics in one explicit registry (no global recorder): queue length per project,
//! GPUs allocated per model and pool, scheduling pass duration, API latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectLabel {
    pub project: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelPoolLabel {
    pub gpu_model: String,
    pub pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// The label of every method or route outside the closed sets.
pub const OTHER: &str = "OTHER";

/// The method as a label: one of the standard methods, else [`OTHER`] (a method is any token a
/// client cares to send, and each distinct label is a series kept until restart).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER,
    }
}

pub struct Metrics {
    registry: Registry,
    pub queue_length: Family<ProjectLabel, Gauge>,
    pub gpus_allocated: Family<ModelPoolLabel, Gauge<f64, AtomicU64>>,
    pub schedule_pass: Histogram,
    pub api_latency: Family<RouteLabel, Histogram>,
    pub attempts_started: Counter,
    /// Nodes' assignment lists read for long polls, and polls that held a list just read
    /// instead of reading it again (agent.rs, `PollMemos`).
    pub poll_reads: Counter,
    pub poll_reads_skipped: Counter,
    /// Per-job GPU gauges under the DCGM exporter's names (their own registry: no prefix).
    pub gpus: crate::telemetry::GpuGauges,
    /// Label sets set last time, so series that went to zero are reset rather than left stale.
    seen: Mutex<(Vec<ProjectLabel>, Vec<ModelPoolLabel>)>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("haneul");
        let queue_length = Family::<ProjectLabel, Gauge>::default();
        registry.register(
            "queue_length",
            "Queued jobs per project",
            queue_length.clone(),
        );
        let gpus_allocated = Family::<ModelPoolLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "gpus_allocated",
            "GPUs held by running attempts, per GPU model and pool",
            gpus_allocated.clone(),
        );
        let schedule_pass = Histogram::new(latency_buckets());
        registry.register(
            "schedule_pass_seconds",
            "Duration of one scheduling pass",
            schedule_pass.clone(),
        );
        let api_latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "api_request_seconds",
            "API request latency by route and status",
            api_latency.clone(),
        );
        let attempts_started = Counter::default();
        registry.register(
            "attempts_started",
            "Attempts started by this server while leading",
            attempts_started.clone(),
        );
        let poll_reads = Counter::default();
        registry.register(
            "poll_reads",
            "Assignment lists read from the store for nodes' long polls",
            poll_reads.clone(),
        );
        let poll_reads_skipped = Counter::default();
        registry.register(
            "poll_reads_skipped",
            "Long polls that held the list their node had just been answered, unread",
            poll_reads_skipped.clone(),
        );
        Metrics {
            registry,
            queue_length,
            gpus_allocated,
            schedule_pass,
            api_latency,
            attempts_started,
            poll_reads,
            poll_reads_skipped,
            gpus: Default::default(),
            seen: Mutex::new((Vec::new(), Vec::new())),
        }
    }

    pub fn set_queue_lengths(&self, queues: &[(i64, i64)]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for l in seen.0.drain(..) {
            self.queue_length.get_or_create(&l).set(0);
        }
        for &(project, n) in queues {
            let l = ProjectLabel {
                project: project.to_string(),
            };
            self.queue_length.get_or_create(&l).set(n);
            seen.0.push(l);
        }
    }

    pub fn set_allocation(&self, by: &BTreeMap<(String, i64), u64>) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for l in seen.1.drain(..) {
            self.gpus_allocated.get_or_create(&l).set(0.0);
        }
        for ((model, pool), milli) in by {
            let l = ModelPoolLabel {
                gpu_model: model.clone(),
                pool: pool.to_string(),
            };
            self.gpus_allocated
                .get_or_create(&l)
                .set(*milli as f64 / 1000.0);
            seen.1.push(l);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.gpus.encode());
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
