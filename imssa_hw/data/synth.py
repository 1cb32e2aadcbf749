"""eSpeak NG speech synthesis (ctypes, the library the `espeakng-loader` wheel ships).

eSpeak NG is a global-state C library whose output depends on what it spoke before, so the
calls go to a helper process (`espeak_server.py`, one per language per Python process), which
initializes the library once and forks a fresh child per utterance: the same request always
gives the same samples. Requests are serialized by a lock. Without os.fork the helper answers
one request and exits, and the next request starts a new one (`_server`): the same samples,
a process start slower per utterance.
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from imssa_hw.errors import BadInput

_HEADER = struct.Struct("=ii")
_LOCK = threading.Lock()
_SERVERS: dict[str, "_Server"] = {}


class _Server:
    """The helper process, its sample rate and eSpeak NG version."""

    def __init__(self, language: str) -> None:
        script = Path(__file__).with_name("espeak_server.py")
        try:
            self.proc = subprocess.Popen([sys.executable, str(script), language], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise BadInput(f"cannot start the eSpeak NG helper {script}: {exc}") from None
        self.pid = os.getpid()
        try:
            status, self.sample_rate_hz = self._header()
            (n,) = struct.unpack("=i", self._read(4))
            self.version = self._read(n).decode()
        except (BadInput, struct.error) as exc:
            raise BadInput(f"synthetic data needs eSpeak NG from the espeakng-loader wheel; it did "
                           f"not start ({exc}). Install it or use dataset='hd'") from None
        if status != 0 or self.sample_rate_hz <= 0:
            raise BadInput("eSpeak NG failed to initialize (espeakng-loader data path)")

    def _read(self, n: int) -> bytes:
        data = self.proc.stdout.read(n) if n else b""
        if len(data) != n:
            self.proc.kill()
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise BadInput(f"eSpeak NG helper stopped: {err[-1] if err else 'no output'}")
        return data

    def _header(self) -> tuple[int, int]:
        return _HEADER.unpack(self._read(_HEADER.size))

    def say(self, request: dict) -> np.ndarray:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        status, n = self._header()
        samples = self._read(n)
        if not hasattr(os, "fork"):  # the helper answered its one request and ends
            self.close()
        if status == 1:
            raise BadInput(f"eSpeak NG has no voice {request['voice']!r}")
        if status != 0:
            raise BadInput(f"eSpeak NG failed on {request['text']!r} with voice {request['voice']!r}")
        return np.frombuffer(samples, np.int16).astype(np.float32) / 32768.0

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.proc.poll() is None

    def close(self) -> None:
        if self.pid != os.getpid():
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()  # without fork a helper a request: their descriptors must not pile up


@atexit.register
def _close_all() -> None:
    """Stop the helpers still running when the process ends."""
    for server in _SERVERS.values():
        server.close()


def _server(voice: str = "en") -> _Server:
    """The helper for the voice's language ("en-gb-scotland+m3" -> "en"), started on first use."""
    language = voice.split("+")[0].split("-")[0].lower() or "en"
    server = _SERVERS.get(language)
    if server is None or not server.alive():
        server = _SERVERS[language] = _Server(language)
    return server


def synthesize(text: str, voice: str = "en-us+f3", rate_wpm: int = 175, pitch: int = 50,
               pitch_range: int = 50, seed: int = 1) -> tuple[np.ndarray, int]:
    """Speak `text` with an eSpeak voice name ("accent+variant"); returns (float32 audio, rate Hz).

    rate_wpm 80..450 (default 175), pitch and pitch_range 0..99 (default 50); `seed` seeds
    the library's own randomness (breath noise). Same arguments, same samples.
    """
    request = {"text": text, "voice": voice, "rate": int(rate_wpm), "pitch": int(pitch),
               "range": int(pitch_range), "seed": int(seed)}
    with _LOCK:
        server = _server(voice)
        return server.say(request), server.sample_rate_hz


def espeak_version() -> str:
    """Version string of the eSpeak NG library."""
    with _LOCK:
        return _server().version
