"""Whether the kernel's clock is synchronised (NTP), asked through ``adjtimex``.

The service records it in its lifecycle events; ``evgw check`` reports it.
"""

from __future__ import annotations

import ctypes
import ctypes.util


class _Timex(ctypes.Structure):
    # struct timex is ~208 bytes on 64-bit Linux; modes = 0 makes adjtimex read-only
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 252)]


TIME_ERROR = 5


def clock_synchronised() -> bool | None:
    """The kernel's view (adjtimex): True synchronised, False not, None unknown."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    timex = _Timex()
    state = libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR
