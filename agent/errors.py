"""Errors meant for the person at the terminal, not for a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on: the message says what and how to fix it.

    The CLI prints ``evgw: <message>`` and exits with :attr:`exit_code` (default 1;
    2 for invalid input such as a bad config file).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
