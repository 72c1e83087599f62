-- Containers: the image a job's tasks run in (NULL: the command runs directly), and the
-- container runtime a node's agent offers (`podman`, `apptainer`, `none`; NULL until it says).
ALTER TABLE jobs ADD COLUMN container_image TEXT;
ALTER TABLE nodes ADD COLUMN container_runtime TEXT;
