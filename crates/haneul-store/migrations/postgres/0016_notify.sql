-- Other servers sharing the database hear, as a transaction commits, that it appended controller
-- events or gave the controller lease up: the leader then wakes for work another server took in,
-- and a standby takes a released lease, without waiting for its next poll (which stays, as the
-- fallback for a notification lost while a listener reconnects). The payload of an event
-- notification is the notifying session's application_name, so a server can ignore its own.
-- PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION haneul_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('haneul_events', current_setting('application_name'));
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION haneul_notify_events();

-- Only a lease given up (its expiry moved back) or changing hands, not every renewal.
CREATE FUNCTION haneul_notify_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.holder IS DISTINCT FROM OLD.holder OR NEW.expires_at < OLD.expires_at THEN
        PERFORM pg_notify('haneul_lease', NEW.name);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER leases_notify AFTER UPDATE ON leases
    FOR EACH ROW EXECUTE FUNCTION haneul_notify_lease();
