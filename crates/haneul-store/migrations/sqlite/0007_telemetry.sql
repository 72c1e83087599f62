-- GPU telemetry (issue 21).
--
-- Agents sample every GPU a task holds every few seconds. Raw samples are never kept: each one
-- is folded at once into the job's per-GPU summary (kept for good, one row per job and GPU) and
-- into a per-minute series (one row per job, GPU and minute, pruned after the configured
-- retention). Figures are integers: utilisation in percent summed over samples, memory in MiB,
-- energy in milliwatt-hours, sampled and busy (utilisation-weighted) GPU time in ms, power in watts summed over samples.
CREATE TABLE gpu_usage (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    gpu_uuid TEXT NOT NULL,
    node_id INTEGER NOT NULL,
    gpu_index INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    util_sum INTEGER NOT NULL,
    util_max INTEGER NOT NULL,
    mem_max_mib INTEGER NOT NULL,
    energy_mwh INTEGER NOT NULL,
    sampled_ms INTEGER NOT NULL,
    busy_ms INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, gpu_uuid)
);

CREATE TABLE gpu_minutes (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    gpu_uuid TEXT NOT NULL,
    minute INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    util_sum INTEGER NOT NULL,
    util_max INTEGER NOT NULL,
    mem_max_mib INTEGER NOT NULL,
    power_sum_w INTEGER NOT NULL,
    temp_max_c INTEGER NOT NULL,
    PRIMARY KEY (job_id, gpu_uuid, minute)
);
CREATE INDEX gpu_minutes_minute ON gpu_minutes (minute);

-- CPU time of each task as last reported by its agent (cumulative, so a lost batch loses
-- nothing), for the CPU efficiency next to the GPU figures.
CREATE TABLE task_cpu (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    fence INTEGER NOT NULL,
    task INTEGER NOT NULL,
    cpu_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, fence, task)
);
