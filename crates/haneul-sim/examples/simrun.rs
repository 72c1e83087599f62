//! Diagnostic: the summary figures and the idle-time split of `haneul sim --explain`, one line
//! per policy, without the CLI: `simrun SCENARIO FLEET|- POLICY...`
use haneul_sim::scenario::{self, Scenario};
use std::path::Path;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut scn = Scenario::load_with_traces(Path::new(&a[1]), None).unwrap();
    if a[2] != "-" {
        scn.fleet = a[2].clone();
    }
    let catalogue = scn.catalogue().unwrap();
    let fleet = scn.load_fleet(&scn.fleet.clone(), &catalogue).unwrap();
    let w = scn.load_workload(&fleet).unwrap();
    for p in &a[3..] {
        let r =
            scenario::run_policy_explained(&scn, &w, &fleet, &catalogue, p, true, &mut |_, _| {})
                .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        let e = &v["explain"];
        let cap = e["capacity_gpu_hours"].as_f64().unwrap();
        let pc = |k: &str| 100.0 * e[k].as_f64().unwrap() / cap;
        println!(
            "{:12} util {:.3}% mk {:.1} h jain {:.3} p50 {:.0} s p99 {:.2} h | res {:.2}% frag {:.2}% nodem {:.2}% notstart {:.2}% last {}",
            p,
            100.0 * r.utilization,
            r.makespan_s / 3600.0,
            r.jain_fairness,
            v["p50_wait_s"].as_f64().unwrap(),
            v["p99_wait_s"].as_f64().unwrap() / 3600.0,
            pc("reserved_gpu_hours"),
            pc("fragmentation_gpu_hours"),
            pc("no_demand_gpu_hours"),
            pc("not_started_gpu_hours"),
            e["last_job"]
        );
    }
}
