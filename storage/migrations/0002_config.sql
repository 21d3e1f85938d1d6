-- Configuration modules: immutable (space, module, version) rows and an active pointer per
-- module. Activation notifies running servers so they recompile the Space's program.
CREATE TABLE config_versions (
    space_id      bigint NOT NULL REFERENCES spaces (id),
    module        text NOT NULL,
    version       text NOT NULL,
    body          jsonb NOT NULL,
    checksum      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    PRIMARY KEY (space_id, module, version)
);

CREATE TABLE active_config (
    space_id      bigint NOT NULL,
    module        text NOT NULL,
    version       text NOT NULL,
    activated_at  timestamptz NOT NULL,
    PRIMARY KEY (space_id, module),
    FOREIGN KEY (space_id, module, version) REFERENCES config_versions (space_id, module, version)
);

CREATE FUNCTION perkamo_notify_config_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('perkamo_config', NEW.space_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER active_config_changed AFTER INSERT OR UPDATE ON active_config
    FOR EACH ROW EXECUTE FUNCTION perkamo_notify_config_change();
