-- Moving a Space (docs/operations.md (moving a Space)): while a Space is frozen its writes are refused (503
-- space_frozen), so that an export taken meanwhile is exact. The group commit reads the flag
-- in the statement that writes a unit (a write racing the freeze is refused, never lost),
-- and the update notifies running servers through the spaces trigger of 0001.
ALTER TABLE spaces ADD COLUMN frozen boolean NOT NULL DEFAULT false;
