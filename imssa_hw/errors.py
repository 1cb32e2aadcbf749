"""Exceptions shared by every layer.

`BadInput` is the one the command line turns into a one-line message and exit code 2:
raise it (or a subclass) for anything the user gave that cannot be used.
"""


class ImssaError(Exception):
    """Base class of every error this package raises on purpose."""


class BadInput(ImssaError):
    """Something the user supplied (a file, an option, a data set) cannot be used."""
