"""What an interrupted command leaves behind, said in its one closing line.

`main` turns SIGTERM and SIGHUP into `Interrupted` (a KeyboardInterrupt, so `finally` blocks
and context managers clean up as for Ctrl-C); the group prints `Error: interrupted (SIGNAL):`
and the note the command registered with `on_interrupt` when its long work began, or
`NOTHING_KEPT`.
"""

from __future__ import annotations

from contextvars import ContextVar

NOTHING_KEPT = "nothing was written (outputs are written whole, when the work is done); run it again"
_note: ContextVar[str] = ContextVar("kept_on_interrupt", default=NOTHING_KEPT)


class Interrupted(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised wherever the program was."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name

    @classmethod
    def raise_for(cls, signum: int, frame: object) -> None:
        """A signal handler."""
        import signal

        raise cls(signal.Signals(signum).name)


def on_interrupt(note: str) -> None:
    """What the command keeps if it is interrupted from now on, and how to continue."""
    _note.set(note)


def kept_on_interrupt() -> str:
    return _note.get()
