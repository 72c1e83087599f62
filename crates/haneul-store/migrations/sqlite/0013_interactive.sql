-- Interactive sessions (`haneul run --pty`, `srun --pty`): the job's one task runs on a
-- pseudo-terminal its owner attaches to through the server. Kept as a column of its own so
-- that policies (the idle policy's exemption) and reports can select such jobs.
ALTER TABLE jobs ADD COLUMN interactive BOOLEAN NOT NULL DEFAULT 0;
