-- GPU telemetry kept longer, coarser (issue 21).
--
-- Per-minute series are kept for the configured retention; after it the controller folds them
-- into one row per job, GPU and hour (kept for a second, longer retention) before it drops
-- them. An hour keeps the mean of its minutes' means (as a sum over its minutes, in thousandths
-- of a percent, so that an hour folded in two goes add up), the max of their maxes and the sum
-- of their energy. Each minute now carries its energy, so that the hours' energy is exact.
ALTER TABLE gpu_minutes ADD COLUMN energy_mwh INTEGER NOT NULL DEFAULT 0;

CREATE TABLE gpu_hours (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    gpu_uuid TEXT NOT NULL,
    hour INTEGER NOT NULL,
    minutes INTEGER NOT NULL,
    util_mean_milli_sum INTEGER NOT NULL,
    util_max INTEGER NOT NULL,
    mem_max_mib INTEGER NOT NULL,
    power_mean_mw_sum INTEGER NOT NULL,
    temp_max_c INTEGER NOT NULL,
    energy_mwh INTEGER NOT NULL,
    PRIMARY KEY (job_id, gpu_uuid, hour)
);
CREATE INDEX gpu_hours_hour ON gpu_hours (hour);
