"""Sans-I/O decoding of a Modbus meter's identity registers (profile ``[identity]``).

An identity value is an integer register (``u16`` … ``i64``, word order as the profile
says) kept as its decimal text, the form :class:`drivers.modbus.seal.SealTracker` compares
and the station records. :func:`identity_words` is the inverse, for the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.modbus.profile_model import IdentityRegister


def identity_text(reg: IdentityRegister, words: Sequence[int]) -> str:
    """The value of ``reg`` in the registers read; ``ValueError`` when the reply does not
    hold exactly its registers of 16 bits."""
    if len(words) != reg.count:
        raise ValueError(f"reply has {len(words)} registers, expected {reg.count}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise ValueError("reply holds a register value outside 0…0xFFFF")
    ordered = list(reversed(words)) if reg.word_order == "little" else list(words)
    value = 0
    for w in ordered:
        value = value << 16 | w
    bits = 16 * reg.count
    if reg.type.startswith("i") and value >> (bits - 1):
        value -= 1 << bits
    return str(value)


def identity_words(reg: IdentityRegister, value: int) -> list[int]:
    """The registers that make a meter report ``value`` for ``reg``; ``ValueError`` when it
    does not fit the register type."""
    bits = 16 * reg.count
    signed = reg.type.startswith("i")
    low = -(1 << (bits - 1)) if signed else 0
    high = (1 << (bits - 1 if signed else bits)) - 1
    if not low <= value <= high:
        raise ValueError(f"{value} does not fit {reg.name} ({reg.type})")
    raw = value & ((1 << bits) - 1)
    words = [(raw >> (16 * k)) & 0xFFFF for k in reversed(range(reg.count))]
    return list(reversed(words)) if reg.word_order == "little" else words
