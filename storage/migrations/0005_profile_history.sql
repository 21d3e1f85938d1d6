-- One ordered per-profile history for replay: every logged write carries the profile version
-- its unit committed and its position in that unit. Identifies are logged too.
ALTER TABLE events ADD COLUMN profile_version bigint, ADD COLUMN position integer;
ALTER TABLE redemptions ADD COLUMN profile_version bigint, ADD COLUMN position integer;

CREATE TABLE identifies (
    space_id          bigint NOT NULL REFERENCES spaces (id),
    user_id           text NOT NULL,
    profile_version   bigint NOT NULL,
    position          integer NOT NULL,
    traits            jsonb NOT NULL,  -- the patch as sent (null removes a trait)
    received_at       timestamptz NOT NULL,
    program_versions  jsonb NOT NULL,
    PRIMARY KEY (space_id, user_id, profile_version, position)
);
