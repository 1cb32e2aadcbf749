"""drivers/, calibration/ and cli/ install as imssa_hw.* and never as generic top-level names;
the shipped recordings and models install with their license."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAPPED = {"imssa_hw.drivers": "drivers", "imssa_hw.calibration": "calibration", "imssa_hw.cli": "cli"}

PROBE = """
import importlib, importlib.util, json, pkgutil
import imssa_hw
out = {"generic": {name: importlib.util.find_spec(name) is not None
                   and "imssa" in str(importlib.util.find_spec(name).origin or "")
                   for name in ("drivers", "calibration", "cli")}, "files": {}}
for name in ("imssa_hw", "imssa_hw.drivers", "imssa_hw.calibration", "imssa_hw.cli"):
    out["files"][name] = importlib.import_module(name).__file__
modules = [m.name for m in pkgutil.walk_packages(imssa_hw.__path__, "imssa_hw.")]
out["modules"] = modules
print(json.dumps(out))
"""


def _source_modules() -> set[str]:
    """Every module of the source tree, under the name it must install as."""
    names = set()
    for package, folder in {"imssa_hw": "imssa_hw", **MAPPED}.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.add(".".join([package, *parts]))
    names.discard("imssa_hw")
    return names


def _probe(env: dict[str, str], cwd: pathlib.Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_editable_install_maps_the_folders(tmp_path):
    """The environment the tests run in has the README's `pip install -e .`."""
    result = _probe(dict(os.environ), tmp_path)
    for package, folder in MAPPED.items():
        assert pathlib.Path(result["files"][package]).parent == ROOT / folder
    assert not any(result["generic"].values()), result["generic"]


@pytest.mark.slow(seconds=14)
def test_regular_install_has_every_module(tmp_path):
    """`pip install .` (built into a target folder) imports every module under imssa_hw.*."""
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.fail(build.stderr)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    # -S would drop site-packages too; instead run from a folder where the repo is not on the path
    # and check the files came from the target.
    result = _probe(env, tmp_path)
    for name, path in result["files"].items():
        assert str(target) in path, (name, path)
    assert not (target / "drivers").exists() and not (target / "cli").exists()
    assert not any(result["generic"].values()), result["generic"]
    missing = _source_modules() - set(result["modules"])
    assert not missing, f"modules not installed (add their package to setup.cfg): {sorted(missing)}"
    # the shipped recordings come with their license and attribution (CC BY-SA 4.0)
    fsdd = target / "imssa_hw" / "data" / "fsdd"
    assert (fsdd / "LICENSE").is_file() and (fsdd / "README.md").is_file()
    assert (fsdd / "train_filenames.txt").is_file() and (fsdd / "test_filenames.txt").is_file()
    assert len(list((fsdd / "audio").glob("*.flac"))) == 3000
    flite = target / "imssa_hw" / "data" / "flite"  # CMU Flite's notice travels with the clips
    assert (flite / "LICENSE").is_file() and (flite / "train_filenames.txt").is_file()
    assert len(list((flite / "audio").glob("*.flac"))) == 200
    digits = target / "imssa_hw" / "data" / "uci_digits"  # CC BY 4.0: attribution travels along
    assert (digits / "LICENSE").is_file()
    assert (digits / "digits.npz").read_bytes() == (ROOT / "imssa_hw" / "data" / "uci_digits"
                                                    / "digits.npz").read_bytes()
    # the shipped models, byte for byte, with their index, reports and license (CC BY-SA 4.0)
    shipped, installed = ROOT / "imssa_hw" / "models", target / "imssa_hw" / "models"
    index = json.loads((shipped / "index.json").read_text())
    files = ["index.json", "README.md"] + [entry[kind] for entry in index["models"].values()
                                           for kind in ("checkpoint", "report")]
    assert "zero-one.pt" in files
    for name in files:
        assert (installed / name).read_bytes() == (shipped / name).read_bytes(), name
    # arc2control's channel mappings, byte for byte, with its license and where they come from
    source = ROOT / "drivers" / "arc2_mappings"
    copied = target / "imssa_hw" / "drivers" / "arc2_mappings"
    names = sorted(p.name for p in source.iterdir())
    assert {"LICENSE", "README.md", "resarray32.toml", "standard32.toml"} <= set(names)
    for name in names:
        assert (copied / name).read_bytes() == (source / name).read_bytes(), name


def test_the_version_is_stated_alike_everywhere():
    """The package's version is the citation's and the changelog's newest section's."""
    import imssa_hw

    citation = (ROOT / "CITATION.cff").read_text().splitlines()
    assert f'version: "{imssa_hw.__version__}"' in citation
    sections = [line for line in (ROOT / "CHANGELOG.md").read_text().splitlines()
                if line.startswith("## ")]
    assert sections[0].startswith(f"## {imssa_hw.__version__} (")
