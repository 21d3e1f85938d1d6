"""Moving a Space (docs/operations.md (moving a Space)): ``perkamo export`` and ``perkamo
import`` of a whole Space as one JSON Lines file, and opening balances and known transaction
ids from another system (``perkamo import-balances``)."""
