-- Opening balances (docs/operations.md (moving a Space), perkamo import-balances) are adjustments that may also move
-- the earned total by another amount than the balance (``earned``: added, never set) and
-- merge traits into the profile, in the same write. Replay needs both. ``earned_at`` and
-- ``expires_at`` date the opening lot of a wallet with lots (kept for the lots' engine).
ALTER TABLE adjustments
    ADD COLUMN earned     numeric,
    ADD COLUMN traits     jsonb,
    ADD COLUMN earned_at  timestamptz,
    ADD COLUMN expires_at timestamptz;
