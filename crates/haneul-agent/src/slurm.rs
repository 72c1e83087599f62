//! Slurm's environment for a task, so batch scripts written for Slurm read what they expect
//! (`SLURM_JOB_ID`, `SLURM_JOB_NODELIST`, `SLURM_PROCID`, ...), and Slurm's compressed host
//! list form (`gpu[001-004,007]`) both ways.

use haneul_api::Assignment;

/// A name split into the prefix before its trailing digits and those digits (kept as text, so
/// zero padding survives): `gpu007` is (`gpu`, `007`).
fn split_number(name: &str) -> (&str, &str) {
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    name.split_at(name.len() - digits)
}

/// Slurm's compressed form of a set of host names: sorted, and names that differ only in a
/// trailing number joined into ranges (`gpu[001-004,007],login1`). Zero-padded numbers join
/// only numbers of their width; unpadded ones join each other (`n[9-10]`). Names are sorted by
/// prefix, then number, so the form does not depend on the order given.
pub fn hostlist<S: AsRef<str>>(names: &[S]) -> String {
    // (prefix, numbered, padded width or 0, number, whole name)
    let mut keyed: Vec<(&str, bool, usize, u64, &str)> = Vec::new();
    for n in names {
        let n = n.as_ref();
        let (prefix, digits) = split_number(n);
        // A number too long for u64, or a name that is all digits, is kept whole.
        match digits.parse::<u64>() {
            Ok(v) if !prefix.is_empty() => {
                let pad = if digits.len() > 1 && digits.starts_with('0') {
                    digits.len()
                } else {
                    0
                };
                keyed.push((prefix, true, pad, v, n));
            }
            _ => keyed.push((n, false, 0, 0, n)),
        }
    }
    keyed.sort();
    keyed.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < keyed.len() {
        let (prefix, numbered, pad, _, whole) = keyed[i];
        let mut j = i + 1;
        while numbered && j < keyed.len() && keyed[j].0 == prefix && keyed[j].1 && keyed[j].2 == pad
        {
            j += 1;
        }
        if j == i + 1 {
            out.push(whole.to_string());
            i += 1;
            continue;
        }
        let mut ranges: Vec<String> = Vec::new();
        let mut k = i;
        while k < j {
            let start = keyed[k].3;
            let mut end = start;
            while k + 1 < j && keyed[k + 1].3 == end + 1 {
                end += 1;
                k += 1;
            }
            ranges.push(if start == end {
                format!("{start:0pad$}")
            } else {
                format!("{start:0pad$}-{end:0pad$}")
            });
            k += 1;
        }
        out.push(format!("{prefix}[{}]", ranges.join(",")));
        i = j;
    }
    out.join(",")
}

/// The host names of a compressed list (`scontrol show hostnames`), in the list's order; `None`
/// when it is not one (unbalanced brackets, a reversed range, a range over a million hosts).
pub fn expand_hostlist(list: &str) -> Option<Vec<String>> {
    const MAX_HOSTS: u64 = 1_000_000;
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        // One item: up to the next comma outside brackets.
        let mut depth = 0i32;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ',' if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
            if !(0..=1).contains(&depth) {
                return None;
            }
        }
        if depth != 0 {
            return None;
        }
        let item = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        match item.split_once('[') {
            None if item.is_empty() => return None,
            None => out.push(item.to_string()),
            Some((prefix, inner)) => {
                let (ranges, suffix) = inner.split_once(']')?;
                for r in ranges.split(',') {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    let (lo, hi) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
                    if lo > hi || hi - lo >= MAX_HOSTS || out.len() as u64 > MAX_HOSTS {
                        return None;
                    }
                    let width = a.len();
                    for v in lo..=hi {
                        out.push(format!("{prefix}{v:0width$}{suffix}"));
                    }
                }
            }
        }
    }
    Some(out)
}

/// Where a task sits in its gang, as [`crate::node`] works it out from the assignment.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub world: u32,
    pub rank: u32,
    pub local_rank: u32,
    pub node_rank: u32,
    pub local_world: u32,
}

/// Slurm's variables for task `a` placed at `p` on node `me`: those common scripts read.
/// The gang's nodes are its peers' names (or addresses, where nodes advertise one).
pub fn env(a: &Assignment, p: Place, me: &str) -> Vec<(String, String)> {
    let mut nodes: Vec<&str> = a.peers.iter().map(String::as_str).collect();
    if nodes.is_empty() {
        nodes.push(me);
    }
    let nodelist = hostlist(&nodes);
    let nnodes = {
        let mut n = nodes.clone();
        n.sort_unstable();
        n.dedup();
        n.len()
    };
    let batch = a.batch.clone().unwrap_or_default();
    let ntasks = batch.ntasks.unwrap_or(p.world);
    let mut env: Vec<(String, String)> = vec![
        ("SLURM_JOB_ID".into(), a.job.to_string()),
        ("SLURM_JOBID".into(), a.job.to_string()),
        ("SLURM_JOB_NAME".into(), a.name.clone()),
        ("SLURM_JOB_NODELIST".into(), nodelist.clone()),
        ("SLURM_NODELIST".into(), nodelist),
        ("SLURM_NNODES".into(), nnodes.to_string()),
        ("SLURM_JOB_NUM_NODES".into(), nnodes.to_string()),
        ("SLURM_NTASKS".into(), ntasks.to_string()),
        ("SLURM_NPROCS".into(), ntasks.to_string()),
        ("SLURM_PROCID".into(), p.rank.to_string()),
        ("SLURM_LOCALID".into(), p.local_rank.to_string()),
        ("SLURM_NODEID".into(), p.node_rank.to_string()),
        ("SLURMD_NODENAME".into(), me.to_string()),
        (
            "SLURM_GPUS_ON_NODE".into(),
            (a.gpus.len() as u32 * p.local_world).to_string(),
        ),
        (
            "SLURM_RESTART_COUNT".into(),
            (a.fence - 1).max(0).to_string(),
        ),
    ];
    if a.cpu_milli > 0 {
        env.push((
            "SLURM_CPUS_PER_TASK".into(),
            a.cpu_milli.div_ceil(1000).to_string(),
        ));
    }
    if a.memory_mib > 0 {
        env.push((
            "SLURM_MEM_PER_NODE".into(),
            (a.memory_mib * p.local_world as u64).to_string(),
        ));
    }
    if let Some(arr) = &a.array {
        // Both Slurm's names and Haneul's own, so scripts written for either read them.
        env.push(("SLURM_ARRAY_JOB_ID".into(), arr.job.to_string()));
        for prefix in ["SLURM", "HANEUL"] {
            for (k, v) in [
                ("TASK_ID", arr.task.to_string()),
                ("TASK_COUNT", arr.count.to_string()),
                ("TASK_MIN", arr.min.to_string()),
                ("TASK_MAX", arr.max.to_string()),
                ("TASK_STEP", arr.step.to_string()),
            ] {
                env.push((format!("{prefix}_ARRAY_{k}"), v));
            }
        }
    }
    let account = batch.account.unwrap_or_else(|| a.project.to_string());
    env.push(("SLURM_JOB_ACCOUNT".into(), account));
    for (k, v) in [
        ("SLURM_JOB_PARTITION", batch.partition),
        ("SLURM_SUBMIT_DIR", batch.submit_dir),
    ] {
        if let Some(v) = v {
            env.push((k.into(), v));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compressed_host_lists() {
        assert_eq!(
            hostlist(&["gpu004", "gpu001", "gpu002", "gpu003", "gpu007"]),
            "gpu[001-004,007]"
        );
        assert_eq!(hostlist(&["node1"]), "node1");
        assert_eq!(hostlist(&["a1", "a2", "b", "a2"]), "a[1-2],b");
        // Zero-padded numbers join their own width only; unpadded ones join each other.
        assert_eq!(
            hostlist(&["n9", "n10", "n011", "n012"]),
            "n[9-10],n[011-012]"
        );
        assert_eq!(hostlist(&["10.0.0.5", "10.0.0.6"]), "10.0.0.[5-6]");
        assert_eq!(
            expand_hostlist("gpu[001-003,007],login1").unwrap(),
            ["gpu001", "gpu002", "gpu003", "gpu007", "login1"]
        );
        for bad in ["gpu[1-", "gpu[3-1]", "a]b[", "a,,b", "x[0-99999999]"] {
            assert!(expand_hostlist(bad).is_none(), "{bad}");
        }
    }

    proptest! {
        /// Expanding the compressed form gives back the names, sorted and without repeats.
        #[test]
        fn hostlist_round_trips(names in proptest::collection::vec("[a-c]{1,3}[0-9]{0,3}", 1..40)) {
            let list = hostlist(&names);
            let mut back = expand_hostlist(&list).unwrap();
            back.sort();
            let mut want = names.clone();
            want.sort();
            want.dedup();
            prop_assert_eq!(back, want);
            // The same set in another order compresses the same way.
            let mut rev = names.clone();
            rev.reverse();
            prop_assert_eq!(hostlist(&rev), list);
        }
    }
}
