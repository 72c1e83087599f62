-- Job arrays as one stored job. The array's own row keeps its canonical task-id spec
-- (haneul_model::ArraySpec, `0-9999%64`) in array_spec and how many of its tasks the
-- controller has made into jobs so far in array_next; it never runs itself. Each task, once
-- materialised, is a job of its own whose array_job_id and array_task say where it belongs.
ALTER TABLE jobs ADD COLUMN array_spec TEXT;
ALTER TABLE jobs ADD COLUMN array_next INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN array_job_id INTEGER REFERENCES jobs(id);
ALTER TABLE jobs ADD COLUMN array_task INTEGER;
-- One job per task (a task cancelled before it was materialised is stored as cancelled, so the
-- controller skips it), and the array's tasks found without a scan of every job.
CREATE UNIQUE INDEX jobs_array_task ON jobs (array_job_id, array_task) WHERE array_job_id IS NOT NULL;
