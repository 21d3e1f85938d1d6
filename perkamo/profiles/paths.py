"""Where the stored JSON of this domain keeps what storage's aggregate queries sum: the
profile state's wallets and the answers' deltas and costs. Storage is told these paths
instead of knowing the shapes (a test checks them against the Structs they name)."""

from __future__ import annotations

from storage.ledger import AnswerPaths
from storage.stats import WalletPaths

WALLETS = WalletPaths(
    wallets="wallets", balance="balance", earned="earned", spent="spent", pending="pending",
    lots="lots",
)  # fmt: skip
ANSWERS = AnswerPaths(
    delta="delta", cost="cost", wallet="wallet", amount="amount", pending="pending",
    settled="settled", released="released", expired="expired",
)  # fmt: skip
