"""A tiny eSpeak NG server that makes synthesis independent of what was spoken before.

eSpeak NG keeps hidden state between utterances (pitch flutter phase, gain control, echo
buffer, rand()), so the same call can give different samples depending on history. This
process initializes the library once and never speaks itself: for every request it forks a
child, which starts from that pristine state, speaks, writes the samples and exits. Where there
is no os.fork (Windows) it answers one request itself and exits, and the client starts a new
one for the next: slower (a process per utterance), the same samples.

Run by `imssa_hw.data.synth` as `python espeak_server.py LANGUAGE` (it imports nothing of
imssa_hw, to stay small and quick to fork). It selects the voice LANGUAGE once before serving,
so that the children find that language's dictionary loaded (a first voice selection costs
~5 ms); one server per language. Protocol on stdin/stdout:
  hello:    int32 status 0, int32 sample rate, int32 n, n bytes version (UTF-8)
  request:  one JSON line {"text", "voice", "rate", "pitch", "range", "seed"}
  response: int32 status (0 ok, 1 unknown voice, 2 synthesis failed), int32 n, n bytes of
            int16 samples (native byte order)
"""

from __future__ import annotations

import os
import sys

# Run as a script, its folder (imssa_hw/data) is first on the path: drop it so that its
# modules (cache.py, features.py, ...) cannot shadow the standard library.
if __name__ == "__main__":
    _here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _here]

import ctypes  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4
HEADER = struct.Struct("=ii")


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def _load():
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                 espeakng_loader.get_data_path().encode(), 0)
    return lib, rate


def _speak(lib, libc, request: dict, chunks: list) -> tuple[int, bytes]:
    """Runs in a forked child (or, without fork, in a server that then exits)."""
    seed = int(request.get("seed", 1)) & 0x7FFFFFFF
    libc.srand(seed)
    lib.espeak_ng_SetRandSeed(seed)  # its own generator, else seeded from the clock at startup
    if lib.espeak_SetVoiceByName(request["voice"].encode()) != 0:
        return 1, b""
    for param, key in ((PARAM_RATE, "rate"), (PARAM_PITCH, "pitch"), (PARAM_RANGE, "range")):
        lib.espeak_SetParameter(param, int(request[key]), 0)
    lib.espeak_SetParameter(PARAM_VOLUME, 100, 0)
    data = request["text"].encode("utf-8") + b"\0"
    if lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None) != 0:
        return 2, b""
    return 0, b"".join(chunks)


def main() -> int:
    lib, rate = _load()
    libc = ctypes.CDLL(None)
    chunks: list[bytes] = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    def collect(wav, n, events):
        if n > 0 and wav:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    if rate <= 0:
        _write_all(HEADER.pack(2, 0))
        return 1
    lib.espeak_SetSynthCallback(collect)
    if len(sys.argv) > 1:
        lib.espeak_SetVoiceByName(sys.argv[1].encode())
    version = lib.espeak_Info(None)
    _write_all(HEADER.pack(0, rate) + struct.pack("=i", len(version)) + version)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if not hasattr(os, "fork"):  # no fork here: speak from this pristine state, once, and
            status, samples = _speak(lib, libc, request, chunks)  # end (the client starts anew)
            _write_all(HEADER.pack(status, len(samples)) + samples)
            return 0
        pid = os.fork()
        if pid == 0:
            try:
                status, samples = _speak(lib, libc, request, chunks)
                _write_all(HEADER.pack(status, len(samples)) + samples)
                code = 0
            except BaseException:
                code = 3
            os._exit(code)
        _, wait_status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(wait_status) != 0:
            _write_all(HEADER.pack(2, 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
