"""Sans-I/O debouncing of one digital input: raw levels in, :class:`InputChanged` out.

A level counts once it has held for ``debounce_s`` (by the caller's timestamps); the first
stable level after start is reported with ``initial``. ``active_high`` false inverts the
contact (a normally-closed loop reads low when the door is shut open, for instance).
"""

from __future__ import annotations

from drivers.inputs.events import InputChanged


class InputTracker:
    def __init__(
        self,
        input_id: str,
        role: str,
        *,
        active_high: bool = True,
        debounce_s: float = 0.2,
        connectors: tuple[str, ...] = (),
    ) -> None:
        self.input_id = input_id
        self.role = role
        self.active_high = active_high
        self.debounce_s = debounce_s
        self.connectors = connectors
        self.active: bool | None = None
        """The debounced state; ``None`` until the first stable level."""
        self._candidate: bool | None = None
        self._since = 0.0

    def feed(self, level: bool, ts: float) -> list[InputChanged]:
        active = level if self.active_high else not level
        if active != self._candidate:
            self._candidate, self._since = active, ts
        if active == self.active or ts - self._since < self.debounce_s:
            return []
        initial = self.active is None
        self.active = active
        return [
            InputChanged(self.input_id, ts, self.role, active, self.connectors, initial=initial)
        ]
