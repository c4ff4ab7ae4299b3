"""The durable signed ledger: append-only, hash-chained, signed, with per-uplink cursors.

See ``docs/LEDGER.md``. The service opens one :class:`Ledger` per process.
"""

from agent.ledger.chain import Checkpoint
from agent.ledger.keys import GatewayKey, PublicKey
from agent.ledger.ledger import Ledger

__all__ = ["Checkpoint", "GatewayKey", "Ledger", "PublicKey"]
