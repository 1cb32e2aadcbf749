"""Hostile values for every number, path and port option of every command (issue 32): one line
`Error: ...`, exit 2 (or 3), no traceback, and values that no option accepts (NaN, infinities,
huge numbers, empty text, unwritable outputs, a folder for a file, busy or impossible ports) are
refused by name when the command line is parsed, before any work.

Commands and options are discovered from the click group, so a new one is covered (or this test
asks for its harmless arguments in BASE). Every command gets arguments that make it stop at once
when the option under test is fine (a port, deployment or profile that does not exist), and the
option under test comes first on the command line, so it is the first one click checks.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from imssa_hw.cli.main import cli
from imssa_hw.cli.options import FiniteFloat, OutputPath, Port


def leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


COMMANDS = dict(leaf_commands())
NO_PORT = "{missing}/port"
BASE = {
    "board info": {"port": NO_PORT},
    "board read": {"port": NO_PORT, "out": "{tmp}/maps"},
    "board selftest": {"port": NO_PORT},
    "board status": {"port": NO_PORT},
    "budget": {"deploy_dir": "{missing}", "port": NO_PORT, "calibration": "{missing}"},
    "calibrate": {"port": NO_PORT, "out": "{tmp}/calibration"},
    "compile": {"checkpoint": "{missing}/model.pt", "out": "{tmp}/deploy"},
    "demo": {"emulator_profile": "{missing}/profile.toml"},
    "emulate": {"profile": "{missing}/profile.toml"},
    "finetune": {"deploy_dir": "{missing}", "port": NO_PORT},
    "import": {"state_dict": "{missing}/model.pt", "board_profile": "{missing}/profile.toml",
               "out": "{tmp}/imported"},
    "infer": {"deploy_dir": "{missing}", "port": NO_PORT},
    "journal export": {"journal_path": "{missing}/journal.jsonl", "out": "{tmp}/logs"},
    "program": {"deploy": "{missing}", "port": NO_PORT},
    "sweep": {"model_seeds_text": "0,0"},  # checked last of the number lists
    "train": {"board_profile": "{missing}/profile.toml", "out": "{tmp}/run"},
}
"""Arguments under which each command stops at once, before any work (by parameter name)."""

NUMBERS = (click.types.FloatParamType, click.types.IntParamType)
CASES = [(name, p) for name, command in COMMANDS.items() for p in command.params
         if isinstance(p.type, (*NUMBERS, click.Path))]
OUTPUT_NAMES = {"out", "report", "state", "port_file", "smu_port_file", "hdf5", "journal"}

# Hostile values by kind: (refused by every option of the kind, possibly fine for some).
FLOATS = (["nan", "inf", "-inf", "1e308", "-1e308", ""], ["-1", "0", "1e-300"])
INTS = ([str(10**30), str(-10**30), "", "1.5"], ["-1", "0", str(2**63)])
PORTS = (["{busy}", "99999", "-5", str(2**64), ""], ["0"])
OUTPUTS = (["", "/proc/x/y", "{file}/x", "/dev/null"], [])
INPUTS = ([], ["", "/proc/x/y", "{tmp}", "{file}", "{missing}"])




def hostile(param: click.Parameter) -> tuple[list[str], list[str]]:
    if isinstance(param.type, Port):
        return PORTS
    if isinstance(param.type, click.types.FloatParamType):
        return FLOATS
    if isinstance(param.type, click.types.IntParamType):
        return INTS
    if isinstance(param.type, OutputPath):  # and the wrong kind of thing where it exists
        return OUTPUTS[0] + ["{tmp}" if param.type.file_okay else "{file}"], OUTPUTS[1]
    return INPUTS


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> Iterator[dict[str, str]]:
    """{tmp} a folder (in the working directory), {file} a file, {missing} a path that does not
    exist, {busy} a port something listens on."""
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "file").write_text("x")
    busy = socket.create_server(("127.0.0.1", 0))
    with busy, pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("IMSSA_HW_CACHE", str(tmp / "cache"))
        patch.delenv("IMSSA_HW_PORT", raising=False)
        yield {"tmp": str(tmp / "work"), "file": str(tmp / "file"),
               "missing": str(tmp / "missing"), "busy": str(busy.getsockname()[1])}


def run(name: str, param: click.Parameter, value: str, places: dict[str, str]):
    """`imssa-hw NAME` with `param` = `value` first, then the command's BASE arguments."""
    Path(places["tmp"]).mkdir(exist_ok=True)
    values = {**{k: v for k, v in BASE[name].items() if k != param.name}, param.name: value}
    options, arguments = [], []
    for p in sorted(COMMANDS[name].params, key=lambda p: p is not param):
        if p.name in values:
            text = values[p.name].format(**places)
            if isinstance(p, click.Argument):
                arguments.append(text)
            else:
                options.append(f"{p.opts[0]}={text}")
    return CliRunner().invoke(cli, [*name.split(), *options, "--", *arguments],
                              prog_name="imssa-hw")


def check(name: str, param: click.Parameter, value: str, places: dict[str, str],
          refused: bool) -> None:
    result = run(name, param, value, places)
    case = f"imssa-hw {name} {param.name}={value!r}: exit {result.exit_code}\n{result.output}"
    assert isinstance(result.exception, SystemExit), case  # nothing else escaped: no traceback
    assert result.exit_code in (2, 3), case
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), case
    if refused:  # by this option, not by a harmless argument after it
        assert any(re.search(rf"{opt}\b(?!-)", lines[0]) for opt in param.opts), case


def test_every_command_has_harmless_arguments():
    assert set(BASE) == set(COMMANDS)
    for name, values in BASE.items():
        assert set(values) <= {p.name for p in COMMANDS[name].params}, name


def test_every_option_uses_the_shared_rules():
    """Floats finite and bounded, integers bounded, outputs checked, listening ports free."""
    for name, param in CASES:
        where = f"{name} {param.name}"
        if isinstance(param.type, click.types.FloatParamType):
            assert isinstance(param.type, FiniteFloat), where
        elif isinstance(param.type, click.types.IntParamType):
            assert isinstance(param.type, click.IntRange), where
            assert None not in (param.type.min, param.type.max), where
        if param.name in OUTPUT_NAMES:
            assert isinstance(param.type, OutputPath), where
        if param.name.endswith("_port"):
            assert isinstance(param.type, Port), where


@pytest.mark.parametrize("name", sorted(BASE))
def test_hostile_values_are_one_line(name, places):
    """Every number, path and port option of `name` with every hostile value of its kind."""
    for command_name, param in CASES:
        if command_name == name:
            refused, maybe = hostile(param)
            for value in refused + maybe:
                check(name, param, value, places, refused=value in refused)



TEXT_NUMBERS = {
    ("emulate", "overrides"): ["read_chain.read_noise_rel=nan", "relaxation.sigma_min_siemens=inf"],
    ("demo", "overrides"): ["read_chain.read_noise_rel=-inf", "defects.stuck_on_fraction=nan"],
    ("sweep", "sigma_text"): ["nan", "0,inf", "1e308", "-1"],
    ("sweep", "bits_text"): ["nan", "1e308", str(10**30)],
    ("program", "tolerance"): ["nan", "inf%", "1e308uS", "nanuS"],
}
"""Text options that carry numbers: every value here is refused, naming the option."""


@pytest.mark.parametrize("name,param_name", sorted(TEXT_NUMBERS))
def test_numbers_in_text_options_are_finite(name, param_name, places):
    param = next(p for p in COMMANDS[name].params if p.name == param_name)
    for value in TEXT_NUMBERS[name, param_name]:
        check(name, param, value, places, refused=True)


def _text(param: click.Parameter) -> st.SearchStrategy[str]:
    if isinstance(param.type, click.types.FloatParamType):
        return st.floats().map(repr)
    if isinstance(param.type, click.types.IntParamType):
        return st.integers().map(str)
    return st.sampled_from(sum(hostile(param), []))


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_any_value_is_fine_or_one_line(data, places):
    """Random numbers (any float, any size of integer) for random options: accepted (the
    command then stops on its harmless arguments) or refused, always in one line."""
    name, param = data.draw(st.sampled_from(CASES))
    value = data.draw(_text(param))
    check(name, param, value, places, refused=False)
