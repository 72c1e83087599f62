//! `haneul eff ID`: how well a job used its GPUs and CPUs (like Slurm's `seff` or `jobstats`),
//! from the server's telemetry summary (`GET /v1/jobs/{id}/efficiency`).

use crate::client::Conn;
use crate::output::{print_json, table};
use haneul_api::JobEfficiency;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  haneul eff 42\n  haneul eff 42 --json")]
pub struct EffArgs {
    /// The job id.
    id: i64,
    #[command(flatten)]
    conn: Conn,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}%"))
}

pub fn eff(args: EffArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let e: JobEfficiency = api.call("GET", &format!("/v1/jobs/{}/efficiency", args.id), None)?;
    if api.json {
        // Without the per-minute series: they are the portal's charts, long for a script.
        let mut v = serde_json::to_value(&e)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("series");
        }
        return print_json(&v);
    }
    println!("job {}: {}", e.job, crate::i18n::word(&e.state));
    println!("  verdict:          {}", e.verdict);
    println!(
        "  GPU utilisation:  {} mean, {} peak",
        pct(e.gpu_util_mean_pct),
        pct(e.gpu_util_max_pct.map(|v| v as f64))
    );
    println!(
        "  GPU memory peak:  {}",
        e.gpu_mem_max_mib.map_or("-".into(), |m| format!("{m} MiB"))
    );
    println!("  energy:           {:.1} Wh", e.energy_wh);
    println!("  CPU efficiency:   {}", pct(e.cpu_efficiency_pct));
    println!("  samples:          {}", e.samples);
    if let Some(n) = &e.idle_notice {
        println!("  notice:           {n}");
    }
    if !e.gpus.is_empty() {
        let mut t = table(&["NODE", "GPU", "UUID", "MEAN", "PEAK", "MEM MiB", "Wh"]);
        for g in &e.gpus {
            t.add_row(vec![
                g.node.to_string(),
                g.gpu.to_string(),
                g.uuid.clone(),
                format!("{:.1}%", g.util_mean_pct),
                format!("{}%", g.util_max_pct),
                g.mem_max_mib.to_string(),
                format!("{:.1}", g.energy_wh),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}
