-- Canonical JSON form 2 (docs/api.md "Canonical JSON": RFC 8785 with plain-notation decimals). Every stored
-- hash carries the form it was computed in, so hashes made before (form 1) keep matching
-- their original requests: existing rows read 1, rows written from now on default to 2.
ALTER TABLE events ADD COLUMN hash_form smallint NOT NULL DEFAULT 1;
ALTER TABLE events ALTER COLUMN hash_form SET DEFAULT 2;
ALTER TABLE redemptions ADD COLUMN hash_form smallint NOT NULL DEFAULT 1;
ALTER TABLE redemptions ALTER COLUMN hash_form SET DEFAULT 2;
ALTER TABLE config_versions ADD COLUMN checksum_form smallint NOT NULL DEFAULT 1;
ALTER TABLE config_versions ALTER COLUMN checksum_form SET DEFAULT 2;
