-- Unix identities (issue 14): every user has a uid and a primary gid, every project a group;
-- tasks run as their owner with the project's group. Existing rows get ids from the default
-- ranges (users 200000-299999 with gid = uid, projects 300000-399999), the same a new row
-- would get.
ALTER TABLE users ADD COLUMN uid INTEGER;
ALTER TABLE users ADD COLUMN gid INTEGER;
UPDATE users SET uid = 200000 + id - 1, gid = 200000 + id - 1;
CREATE UNIQUE INDEX users_uid ON users (uid);
ALTER TABLE projects ADD COLUMN gid INTEGER;
UPDATE projects SET gid = 300000 + id - 1;
CREATE UNIQUE INDEX projects_gid ON projects (gid);
-- The uid each node's agent runs as: no user may have it.
ALTER TABLE nodes ADD COLUMN agent_uid INTEGER;
