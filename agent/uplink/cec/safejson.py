"""JSON from a peer that may be hostile: bounded depth, bounded numbers, no NaN.

The standard library parser recurses once per nesting level (a ``[[[[…`` answer of a few
hundred kilobytes raises :class:`RecursionError` deep inside it) and converts integers of any
length (Python refuses more than 4,300 digits with a :class:`ValueError`, and anything below
that costs quadratic time). T/CEC objects nest at most six levels and carry no number longer
than a few digits, so :func:`loads` refuses, with :class:`JsonRefused`, any text that nests
deeper than ``max_depth`` or holds a number of more than ``max_digits`` characters, before or
while parsing — never by crashing the caller.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from itertools import accumulate
from typing import Any, Final, NoReturn

MAX_DEPTH: Final = 32
MAX_NUMBER_CHARS: Final = 40
_ESCAPES: Final = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


class JsonRefused(ValueError):
    """Text that is not JSON, or JSON beyond the limits; the message completes "… is"."""


def nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting outside strings, in linear time without recursion.

    Escape pairs go first (so no quote inside a string is escaped any more), then every
    second piece between quotes is outside the strings.
    """
    outside = b"".join(_ESCAPES.sub(b"", raw).split(b'"')[0::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= 1:
        return 1 if brackets else 0
    return max(accumulate(1 if b in b"[{" else -1 for b in brackets))


def _refuse_constant(name: str) -> NoReturn:
    raise JsonRefused(f"JSON with {name}, which is not a number")


def loads(
    raw: bytes, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS
) -> Any:
    """Parse UTF-8 JSON text; numbers with a fraction or exponent become ``Decimal``."""

    def number(text: str, convert: type[int] | type[Decimal]) -> int | Decimal:
        if len(text) > max_number_chars:
            raise JsonRefused(
                f"JSON with a number of {len(text)} characters (at most {max_number_chars})"
            )
        return convert(text)

    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JsonRefused(f"JSON nested {depth} levels deep (at most {max_depth})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"not UTF-8 text ({exc})") from None
    try:
        return json.loads(
            text,
            parse_int=lambda s: number(s, int),
            parse_float=lambda s: number(s, Decimal),
            parse_constant=_refuse_constant,
        )
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise JsonRefused(f"not JSON ({exc})") from None
