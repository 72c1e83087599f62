-- GPU telemetry (issue 21).
--
-- Agents sample every GPU a task holds every few seconds. Raw samples are never kept: each one
-- is folded at once into the job's per-GPU summary (kept for good, one row per job and GPU) and
-- into a per-minute series (one row per job, GPU and minute, pruned after the configured
-- retention). Figures are integers: utilisation in percent summed over samples, memory in MiB,
-- energy in milliwatt-hours, sampled and busy (utilisation-weighted) GPU time in ms, power in watts summed over samples.
CREATE TABLE gpu_usage (
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    gpu_uuid TEXT NOT NULL,
    node_id BIGINT NOT NULL,
    gpu_index BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    util_sum BIGINT NOT NULL,
    util_max BIGINT NOT NULL,
    mem_max_mib BIGINT NOT NULL,
    energy_mwh BIGINT NOT NULL,
    sampled_ms BIGINT NOT NULL,
    busy_ms BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, gpu_uuid)
);

CREATE TABLE gpu_minutes (
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    gpu_uuid TEXT NOT NULL,
    minute BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    util_sum BIGINT NOT NULL,
    util_max BIGINT NOT NULL,
    mem_max_mib BIGINT NOT NULL,
    power_sum_w BIGINT NOT NULL,
    temp_max_c BIGINT NOT NULL,
    PRIMARY KEY (job_id, gpu_uuid, minute)
);
CREATE INDEX gpu_minutes_minute ON gpu_minutes (minute);

-- CPU time of each task as last reported by its agent (cumulative, so a lost batch loses
-- nothing), for the CPU efficiency next to the GPU figures.
CREATE TABLE task_cpu (
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    fence BIGINT NOT NULL,
    task BIGINT NOT NULL,
    cpu_ms BIGINT NOT NULL,
    PRIMARY KEY (job_id, fence, task)
);
