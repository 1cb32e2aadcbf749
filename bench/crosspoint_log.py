"""Crosspoint logs in arc2control's HDF5 layout: how long writing them takes.

`journal export`, `program --hdf5` and `calibrate --hdf5` write one table per device touched,
so a 32x32 part costs 1,024 tables. Logs a whole-array read and a pulse on every other device,
`--events` times (a programming run's history), then writes every 32x32 part of the array.
Prints JSON: per array shape, the median of `--repeats` writes (s, CPU of this process) and the
bytes written. Run it on two trees to compare them.

    python bench/crosspoint_log.py [--shapes 32x32,64x64] [--events 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from imssa_hw import __version__
from imssa_hw.drivers.crosspoint_log import CrosspointLog, write_logs


def history(words: int, bits: int, events: int) -> CrosspointLog:
    """A log of `events` rounds of a whole-array read and a SET pulse on half the devices."""
    rng = np.random.default_rng(0)
    log = CrosspointLog(words, bits)
    for _ in range(events):
        log.read(rng.uniform(1e-6, 150e-6, (words, bits)), 0.2)
        log.pulse(2.0, 20e-9, rng.random((words, bits)) < 0.5)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="32x32,64x64", help="array shapes WORDSxBITS")
    parser.add_argument("--events", type=int, default=4, help="read-and-pulse rounds")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in args.shapes.split(","):
            words, bits = (int(v) for v in shape.split("x"))
            log = history(words, bits, args.events)
            log.timeseries()  # sorted once, as before the first part is written
            times, written = [], []
            for _ in range(args.repeats):
                start = time.process_time()
                written = write_logs({0: log}, Path(folder) / "log.h5", board_arrays=1)
                times.append(time.process_time() - start)
            results.append({"shape": shape, "devices": words * bits, "files": len(written),
                            "rows": sum(len(r) for r in log.timeseries().values()),
                            "write_s": round(statistics.median(times), 4),
                            "bytes": sum(p.stat().st_size for p in written)})
    print(json.dumps({"version": __version__, "events": args.events, "repeats": args.repeats,
                      "shapes": results}))


if __name__ == "__main__":
    main()
