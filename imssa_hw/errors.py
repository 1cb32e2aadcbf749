"""Exceptions shared by every layer.

The command line turns both families into one line of text:
- `BadInput` (exit code 2): something the user gave (a file, an option, a data set, a port
  that does not exist) cannot be used;
- `HardwareError` (exit code 3): a board, its link or an instrument failed or refused (a
  silent board, a lost link, a protocol error, a typed error reply).
"""

EXIT_BAD_INPUT = 2
EXIT_HARDWARE = 3


class ImssaError(Exception):
    """Base class of every error this package raises on purpose."""


class BadInput(ImssaError):
    """Something the user supplied (a file, an option, a data set) cannot be used."""


class HardwareError(ImssaError):
    """A board, its link or an instrument failed or refused a request."""
