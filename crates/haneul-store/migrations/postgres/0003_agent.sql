-- What a node's agent says about itself: how it enforces task limits (`cgroup-v2`, `rlimit`),
-- the address its tasks are reached at (gang peers' MASTER_ADDR), and, while a health check
-- fails, what failed (NULL when healthy).
ALTER TABLE nodes ADD COLUMN limits TEXT;
ALTER TABLE nodes ADD COLUMN address TEXT;
ALTER TABLE nodes ADD COLUMN health TEXT;
