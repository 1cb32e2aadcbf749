"""Hardware as trained against software, on many boards: the default model through
calibrate, compile, program and infer (`imssa-hw demo`) on emulated boards of several seeds
and profiles, trained with and without hardware-aware training.

One model per setting (model seed 0: the task's default model on real speech, tested on FSDD
speaker 03; `--model-seed` trains another of the same recipe); the board seed varies. `--task
zero-one` (default): the 2-bit one-layer model on board-default (3 x 64x64), 100 test
recordings, one recording one point; `--task digits`: the 4-bit two-layer ten-digit model on
board-multi (8 x 64x64, tiles packed densely), 500 test recordings, one recording 0.2 points.
The emulated board has the task's board geometry and the profile's devices.
After the demo, a simulated day passes (the emulator restarted with `--time-scale`, a day in
DAY_WALL_S seconds), `imssa-hw budget` measures the model as trained and attributes the loss;
then `imssa-hw program --refresh`
touches up the drifted devices and `budget` measures again (the accuracies after a day and after
refresh are the budget's: the mean of its measured runs, each listed in *_runs). Prints JSON
{"runs": [{"seed", "profile", "hardware_aware", "software", "hardware_as_trained",
"agreement", "rms_logit_error", "disagreement_margins", "hardware_finetuned",
"hardware_after_day", "hardware_after_refresh", ...}], "summary": ...}. Accuracies in 0..1;
rms_logit_error is the hardware's logit error against software as trained, and
disagreement_margins the software's margins (top logit minus the next) on the recordings the
hardware decides otherwise: one recording is one point, so these show how near the boundary the
flips lie. converters_agreement and converters_rms_logit_error compare software with the
board's loop simulated in software (the checkpoint's scales, ideal conductances, the row DACs
and column ADCs of board-default), and converters_16bit_* the same with 16-bit converters: the
part of the disagreement that the converters' resolution decides before any device error.
ideal_board_agreement is the budget's ideal board (the deployment's targets through the board's
own converters) against software, and agreement_with_ideal_board_after_day / _after_refresh how
often the board decides as that ideal board does: the devices' part alone.

    python bench/fidelity.py [--task zero-one|digits] [--seeds 1,2,3,4,5]
                             [--profiles default,harsh] [--hardware-aware both|on|off]
                             [--model-seed 0] [--out runs.jsonl] [--jobs 1] [--keep DIR]

A board takes about 5 minutes. `--out FILE.jsonl` appends each finished board's run (one JSON
line, flushed and fsynced) as soon as it finishes, and resumes: boards whose (task, seed,
profile, hardware_aware, model_seed) are already in the file are not run again, and the printed
runs and summary cover every requested board in the file (wall_time_s is this invocation's). A
torn last line (a crash mid-write) is noted on stderr and trimmed; one writer per file.
`--jobs N` runs up to N boards at once (each has its own emulators and work dir; runs are
printed in the order profile, mode, seed whatever the finishing order). After a board fails, no
new board starts; those running finish (and are saved), then the bench exits non-zero.
`--keep DIR` keeps the work dirs under DIR (a board's dir is cleared when it is run again)
instead of a temporary directory. Each finished board prints one line on stderr, with its time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

PROFILES = {"default": "emulator-default", "harsh": "emulator-harsh"}
DAY_S = 86400.0
DAY_WALL_S = 20.0
AGREEMENT_TARGET = {"zero-one": 99, "digits": 98}
"""Agreement with software the default profile's boards must reach, %, per task."""
KEY = ("task", "seed", "profile", "hardware_aware", "model_seed")
"""The fields that name a board's run (in --out files)."""
CONVERTERS_LOCK = threading.Lock()
"""Guards the `converters` dict that concurrent `run`s share."""


def imssa(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", *args], check=True,
                   stdout=subprocess.DEVNULL)


def day_and_refresh(out: Path, seed: int, profile: str, board_profile: str) -> dict:
    """A day passes on the demo's board; budget; refresh; budget again."""
    from imssa_hw.board import load_board_profile
    from imssa_hw.emulator.process import start_emulator

    geometry = load_board_profile(board_profile).geometry
    options = dict(seed=seed, profile=PROFILES[profile], arrays=geometry.arrays,
                   rows=geometry.rows, cols=geometry.cols)
    day_passing = start_emulator(out / "emulator", time_scale=DAY_S / DAY_WALL_S, **options)
    time.sleep(DAY_WALL_S)
    day_passing.stop()
    emu = start_emulator(out / "emulator", **options)
    board = ["--port", emu.port, "--calibration", str(out / "calib")]
    budget = ["--defects", str(out / "calib" / "defects.json")]
    try:
        imssa("budget", str(out / "deploy"), *board, *budget, "--programmed",
              str(out / "program" / "achieved.npz"), "--report", str(out / "day" / "budget.json"))
        imssa("program", str(out / "deploy"), *board, "--out", str(out / "program"), "--refresh",
              "--defects", str(out / "calib" / "defects.json"), "--no-plots")
        imssa("budget", str(out / "deploy"), *board, *budget, "--programmed",
              str(out / "program" / "refresh" / "achieved.npz"),
              "--report", str(out / "refreshed" / "budget.json"))
    finally:
        emu.stop()
    day = json.loads((out / "day" / "budget.json").read_text())
    refreshed = json.loads((out / "refreshed" / "budget.json").read_text())
    refresh = json.loads((out / "program" / "refresh" / "refresh.json").read_text())
    return {"hardware_after_day": day["hardware_accuracy"],
            "agreement_after_day": day["hardware_agreement"],
            "hardware_after_refresh": refreshed["hardware_accuracy"],
            "hardware_after_day_runs": day["hardware_accuracy_runs"],
            "hardware_after_refresh_runs": refreshed["hardware_accuracy_runs"],
            "agreement_after_refresh": refreshed["hardware_agreement"],
            "ideal_board_agreement": day["ideal_board"]["agreement"],
            "agreement_with_ideal_board_after_day": day["hardware_agreement_with_ideal_board"],
            "agreement_with_ideal_board_after_refresh":
                refreshed["hardware_agreement_with_ideal_board"],
            "drift_rms_us": day["drift_rms_us"], "refresh_rewritten": refresh["rewritten_devices"],
            "refresh_yield_working": refresh["yield_working"],
            "budget_after_day": {c: v["loss_points"] for c, v in day["causes"].items()},
            "budget_dominant_after_day": day["dominant"],
            "budget_unexplained_after_day": day["unexplained_points"],
            "budget_unexplained_after_refresh": refreshed["unexplained_points"]}


def converter_check(model_path: Path, profile_name: str = "board-default") -> dict:
    """Software against the board's loop simulated in software: the checkpoint's scales, ideal
    conductances, only the converters (row DACs, column ADCs) as the profile has them and at 16
    bits. What no board can beat: flips here are the converters' arithmetic, not the devices'."""
    import dataclasses

    import numpy as np
    import torch

    from imssa_hw.board import load_board_profile
    from imssa_hw.hil.inference import load_test_set
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.model.loop_scales import DEFAULT_HEADROOM, stored_scales
    from imssa_hw.training import hardware_aware
    from imssa_hw.training.classifier import model_from_checkpoint

    ckpt = load_checkpoint(model_path)
    x = torch.from_numpy(load_test_set(ckpt)[0])
    model = model_from_checkpoint(ckpt).eval()
    board = load_board_profile(profile_name)
    scales = stored_scales(ckpt, board, DEFAULT_HEADROOM)
    if scales is None:
        raise SystemExit(f"{model_path} keeps no loop scales for {profile_name}")
    fine = dataclasses.replace(board, read=dataclasses.replace(board.read, dac_bits=16, adc_bits=16))
    with torch.no_grad():
        software = model(x).numpy()
        looped = {}
        for name, chain in (("converters", board), ("converters_16bit", fine)):
            hardware_aware.install(model, chain, scales)
            looped[name] = model(x).numpy()
    out = {}
    for name, logits in looped.items():
        out[f"{name}_agreement"] = float((logits.argmax(-1) == software.argmax(-1)).mean())
        out[f"{name}_rms_logit_error"] = round(float(np.sqrt(np.mean((logits - software) ** 2))), 4)
    return out


def run(seed: int, profile: str, hardware_aware: bool, workdir: Path, converters: dict,
        model_seed: int = 0, task: str = "zero-one") -> dict:
    """One board: the demo, a day, refresh. `converters` keeps `converter_check` per model
    (one model per hardware_aware setting), measured on its first board."""
    from imssa_hw.workflows.demo import TASK_DEMOS

    board_profile = TASK_DEMOS[task].board_profile
    out = workdir / f"demo-{task}-{profile}-{seed}-{int(hardware_aware)}-m{model_seed}"
    shutil.rmtree(out, ignore_errors=True)  # a kept dir from an earlier try: start afresh
    flag = "--hardware-aware" if hardware_aware else "--no-hardware-aware"
    imssa("demo", "--task", task, "--seed", str(model_seed), "--board-seed", str(seed),
          "--emulator-profile", PROFILES[profile], flag, "--out", str(out))
    s = json.loads((out / "summary.json").read_text())
    later = day_and_refresh(out, seed, profile, board_profile)
    with CONVERTERS_LOCK:
        if hardware_aware not in converters:
            converters[hardware_aware] = converter_check(out / "model.pt", board_profile)
    return {"task": task, "seed": seed, "profile": profile, "hardware_aware": hardware_aware,
            "model_seed": model_seed,
            "software": s["software_accuracy"], "loop_prediction": s["loop_accuracy"],
            "hardware_as_trained": s["hardware_accuracy_before_finetune"],
            "agreement": s["agreement_before_finetune"],
            "rms_logit_error": s["rms_logit_error_before_finetune"],
            "disagreement_margins": s["disagreement_margins_before_finetune"],
            "hardware_finetuned": s["hardware_accuracy"], "agreement_finetuned": s["agreement"],
            "loss_as_trained_points": round(100 * (s["software_accuracy"]
                                                   - s["hardware_accuracy_before_finetune"]), 2),
            "loss_after_day_points": round(100 * (s["software_accuracy"]
                                                  - later["hardware_after_day"]), 2),
            "loss_after_refresh_points": round(100 * (s["software_accuracy"]
                                                      - later["hardware_after_refresh"]), 2),
            **later, **converters[hardware_aware],
            "yield_working": s["yield_working"], "n_test": s["n_test"],
            "total_time_s": s["total_time_s"]}


def board_key(r: dict) -> tuple:
    """What names a board's run: (task, seed, profile, hardware_aware, model_seed)."""
    return tuple(r[k] for k in KEY)


def load_runs(path: Path) -> dict[tuple, dict]:
    """The runs in the JSONL file `path` (none if it is missing), by `board_key`. A torn last
    line (no newline: a crash mid-write) is noted on stderr and trimmed from the file, so that
    the next append starts on a fresh line."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        print(f"{path}: ignoring a torn last line ({len(data) - complete} bytes, trimmed)",
              file=sys.stderr, flush=True)
        os.truncate(path, complete)
    runs = {}
    for n, line in enumerate(data[:complete].decode().splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not a run ({exc}); mend or remove the line")
            runs[board_key(r)] = r
    return runs


def append_run(path: Path, r: dict) -> None:
    """Append one run as a JSON line, flushed and fsynced."""
    with open(path, "a") as f:
        f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="zero-one", choices=["zero-one", "digits"])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--profiles", default="default,harsh")
    parser.add_argument("--hardware-aware", default="both", choices=["both", "on", "off"])
    parser.add_argument("--model-seed", type=int, default=0,
                        help="seed of the model's training (0: the default model)")
    parser.add_argument("--out", type=Path,
                        help="JSONL file: append each finished board's run; skip those in it")
    parser.add_argument("--jobs", type=int, default=1, help="boards run at the same time")
    parser.add_argument("--keep", type=Path, help="keep the work dirs under this dir")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    profiles = args.profiles.split(",")
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        parser.error(f"unknown profile(s) {', '.join(unknown)}; choose from {', '.join(PROFILES)}")
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.hardware_aware]
    seeds = [int(s) for s in args.seeds.split(",")]
    boards = [(profile, mode, seed) for profile in profiles for mode in modes for seed in seeds]
    key = {b: (args.task, b[2], b[0], b[1], args.model_seed) for b in boards}  # as KEY orders
    start, converters, failed = time.perf_counter(), {}, 0
    done = load_runs(args.out) if args.out else {}
    todo = [b for b in boards if key[b] not in done]
    if args.out and len(todo) < len(boards):
        print(f"{args.out}: {len(boards) - len(todo)} of {len(boards)} boards done already",
              file=sys.stderr, flush=True)

    stop = threading.Event()  # set by a failure (or Ctrl-C): no new board starts

    def timed_run(profile: str, mode: bool, seed: int, workdir: Path) -> tuple[dict, float] | None:
        """`run` one board: its run and the seconds it took (None: not run, after `stop`)."""
        if stop.is_set():
            return None
        began = time.perf_counter()
        try:
            r = run(seed, profile, mode, workdir, converters, args.model_seed, args.task)
        except BaseException:
            stop.set()
            raise
        return r, time.perf_counter() - began

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    workdirs = (contextlib.nullcontext(str(args.keep)) if args.keep
                else tempfile.TemporaryDirectory())
    with workdirs as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(timed_run, *b, Path(tmp)): b for b in todo}
        try:
            for future in as_completed(futures):
                profile, hardware_aware, seed = board = futures[future]
                try:
                    result = future.result()
                except Exception as exc:
                    failed += 1
                    print(f"{profile} board {seed}, hardware-aware {hardware_aware}: failed: "
                          f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    continue
                if result is None:
                    continue
                r, elapsed = result
                done[key[board]] = r
                if args.out:
                    append_run(args.out, r)
                print(f"{profile} board {seed}, hardware-aware {hardware_aware}: software "
                      f"{100 * r['software']:.1f} %, as trained "
                      f"{100 * r['hardware_as_trained']:.1f} %, agreement "
                      f"{100 * r['agreement']:.1f} %, logit error "
                      f"{r['rms_logit_error']:.3f} rms, {elapsed:.0f} s",
                      file=sys.stderr, flush=True)
        finally:
            stop.set()
    missing = sum(key[b] not in done for b in boards)
    if missing:
        raise SystemExit(f"{failed} board(s) failed, {missing} of {len(boards)} not done"
                         + (f"; finished boards are in {args.out}: run again to resume"
                            if args.out else ""))
    runs = [done[key[b]] for b in boards]
    summary = []
    for profile in profiles:
        for hardware_aware in modes:
            group = [r for r in runs if (r["profile"], r["hardware_aware"])
                     == (profile, hardware_aware)]
            losses = [r["loss_as_trained_points"] for r in group]
            day = [r["loss_after_day_points"] for r in group]
            refreshed = [r["loss_after_refresh_points"] for r in group]
            summary.append({"profile": profile, "hardware_aware": hardware_aware,
                            "mean_loss_points": round(sum(losses) / len(losses), 2),
                            "worst_loss_points": max(losses),
                            "mean_loss_after_day_points": round(sum(day) / len(day), 2),
                            "mean_loss_after_refresh_points": round(sum(refreshed) / len(refreshed), 2),
                            "max_budget_unexplained_points": max(
                                abs(r["budget_unexplained_after_day"]) for r in group),
                            "min_agreement": min(r["agreement"] for r in group),
                            "mean_rms_logit_error": round(sum(r["rms_logit_error"] for r in group)
                                                          / len(group), 4),
                            "within_1_point": sum(loss <= 1 for loss in losses),
                            "after_day_within_1_5_points": sum(loss <= 1.5 for loss in day),
                            "after_refresh_within_1_point": sum(loss <= 1 for loss in refreshed),
                            "budget_within_1_point": sum(
                                max(abs(r["budget_unexplained_after_day"]),
                                    abs(r["budget_unexplained_after_refresh"])) <= 1
                                for r in group),
                            "agreement_at_least_99": sum(r["agreement"] >= 0.99 for r in group),
                            "agreement_at_least_98": sum(r["agreement"] >= 0.98 for r in group),
                            "ideal_board_agreement_after_refresh_at_least_99": sum(
                                r["agreement_with_ideal_board_after_refresh"] >= 0.99
                                for r in group),
                            "boards": len(group)})
    print(json.dumps({"runs": runs, "summary": summary,
                      "task": args.task,
                      "target": "as trained within 1 point of software on every board, "
                                f"agreement >= {AGREEMENT_TARGET[args.task]} % on the default "
                                "profile; after a day within 1.5 points, after refresh within 1; "
                                "budget parts within 1 point of the measured loss",
                      "wall_time_s": round(time.perf_counter() - start, 1),
                      "cache": os.environ.get("IMSSA_HW_CACHE", "default")}, indent=2))


if __name__ == "__main__":
    main()
