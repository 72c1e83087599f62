-- Batch scripts: what an `sbatch` script asked for beyond the gang's shape (output and error
-- file patterns, working directory, account and partition names, mail, signal, requeue), as
-- the JSON of haneul_model::BatchOptions. NULL: a job submitted without a batch script.
ALTER TABLE jobs ADD COLUMN batch TEXT;
