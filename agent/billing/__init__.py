"""Money: tariffs by period (尖峰平谷), the split of a session's metered energy at each tariff
boundary, and exact amounts (Decimal, rounded to fen only where the wire needs it)."""
