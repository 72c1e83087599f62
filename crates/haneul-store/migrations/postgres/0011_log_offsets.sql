-- How far into each output file of a task the stored log reaches. An agent marks an upload
-- with the file and the offset its bytes start at; bytes below this mark are already stored
-- and are not appended again (an agent killed between an upload and the record of it sends
-- them a second time when it restarts).
CREATE TABLE log_offsets (
    attempt_id BIGINT NOT NULL REFERENCES attempts(id),
    task BIGINT NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    stored_to BIGINT NOT NULL,
    PRIMARY KEY (attempt_id, task, stream)
);
