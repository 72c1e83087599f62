//! Diagnostic: one CSV line per job (shape, run time, estimate, submission, first start, end)
//! under one policy, for analyses the summary does not give (`docs/simulator.md`, issue 18).
//! `jobdump SCENARIO FLEET|- POLICY > jobs.csv`
use haneul_model::Span;
use haneul_sim::driver::{self, SimConfig};
use haneul_sim::scenario::Scenario;
use std::path::Path;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut scn = Scenario::load_with_traces(Path::new(&a[1]), None).unwrap();
    if a[2] != "-" {
        scn.fleet = a[2].clone();
    }
    let policy = &a[3];
    let catalogue = scn.catalogue().unwrap();
    let fleet = scn.load_fleet(&scn.fleet.clone(), &catalogue).unwrap();
    let w = scn.load_workload(&fleet).unwrap();
    let cfg = SimConfig {
        policy_name: policy.clone(),
        policy: scn.policy(policy).unwrap(),
        measured_on: scn.measured_on.clone(),
        exact_estimates: scn.exact_estimates,
        failures: scn.failures,
        seed: scn.seed,
        check_invariants: false,
        schedule_interval: Span((scn.schedule_interval_s * 1000.0).round() as i64),
        explain: false,
    };
    let r = driver::run(&w, &fleet, &catalogue, &cfg, &mut |_, _| {}).unwrap();
    println!("idx,project,replicas,gpu,work_s,est_s,submit_s,start_s,end_s");
    for (i, j) in w.jobs.iter().enumerate() {
        println!(
            "{},{},{},{:?},{},{},{},{},{}",
            i,
            w.projects[j.project as usize].name,
            j.replicas,
            j.gpu,
            j.work.0 / 1000,
            j.estimate.map(|e| e.0 / 1000).unwrap_or(-1),
            j.submit.0 / 1000,
            r.first_start[i] / 1000,
            r.end[i] / 1000
        );
    }
}
