"""The one base of settings kept in files (`imssa_hw.config`): every settings class round-trips
through JSON, and a bad file is refused in one line naming the key and the settings."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Literal

import pytest

from imssa_hw.calibration.settings import CalibrationSettings
from imssa_hw.config import Config, ConfigError, FieldError, typed
from imssa_hw.data import DataSpec
from imssa_hw.errors import BadInput
from imssa_hw.hil.mode import InferenceMode
from imssa_hw.model.config import ModelConfig, TrainConfig
from imssa_hw.programming.settings import ProgramSettings, Tolerance
from imssa_hw.workflows.demo import DemoSettings

EVERY = [ModelConfig(d_input=32, n_classes=10, h=64, n=8, n_layers=2, bits=None),
         TrainConfig(epochs=7, hardware_fraction=0.25),
         DataSpec.default("digits", test_speakers=(3,), classes=(0, 1)),
         ProgramSettings(settle_s=0.5), Tolerance(rel=0.05, floor_siemens=1e-6),
         CalibrationSettings(reads=2, reset_voltages_v=(0.5, 0.7)),
         DemoSettings(task="digits", mode=InferenceMode.HOST, model={"h": 4})]


@pytest.mark.parametrize("settings", EVERY, ids=lambda s: type(s).__name__)
def test_every_settings_class_round_trips_through_json(settings):
    text = json.dumps(settings.to_dict())
    assert type(settings).from_dict(json.loads(text)) == settings


def test_missing_keys_take_their_defaults_and_updated_is_checked():
    assert TrainConfig.from_dict({}) == TrainConfig()
    cfg = ModelConfig.from_dict({"d_input": 3, "n_classes": 2})
    assert cfg == ModelConfig(d_input=3, n_classes=2)
    assert cfg.updated(h=8).h == 8 and cfg.h == 16
    with pytest.raises(ConfigError, match="state size n must be even"):
        cfg.updated(n=3)


@pytest.mark.parametrize("cls, data, says", [
    (ModelConfig, {"d_input": 3, "n_classes": 2, "colour": 1}, r"unknown key\(s\) in the model config: colour"),
    (ModelConfig, {"d_input": 3, "n_classes": 2, "h": "16"}, "h in the model config: expected int, got '16'"),
    (ModelConfig, {"d_input": 3, "n_classes": 2, "h": True}, "h in the model config: expected int, got True"),
    (ModelConfig, {"d_input": 3}, "model config: .*n_classes"),
    (TrainConfig, {"epochs": 0}, "training settings: epochs must be positive"),
    (TrainConfig, [1, 2], "training settings must be a table of settings, got list"),
    (ProgramSettings, {"settle_s": "1 s"}, "settle_s in the programming settings: expected float"),
    (DataSpec, {"mix_flite": 1}, "mix_flite in the data spec: expected bool, got 1"),
    (DataSpec, {"features": {"n_mels": "x"}}, "n_mels in the feature config: expected int"),
    (DataSpec, {"task": "colours"}, "unknown task 'colours'"),
    (DemoSettings, {"mode": "fast"}, "mode in the demo settings: expected one of"),
])
def test_a_bad_file_is_one_line_naming_the_key(cls, data, says):
    with pytest.raises(ConfigError, match=says) as caught:
        cls.from_dict(data)
    assert isinstance(caught.value, BadInput) and isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


def test_nested_settings_keep_their_own_rules():
    spec = DataSpec.from_dict({"augment": None, "features": {}})  # older files: the defaults
    assert spec.augment == DataSpec().augment and spec.features == DataSpec().features
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in the augmentation settings: pitch"):
        DataSpec.from_dict({"augment": {"pitch": 1}})


class Colour(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Part:
    size: int
    shade: Literal["light", "dark"] = "light"


@dataclass(frozen=True)
class Whole(Config):
    part: Part
    colour: Colour = Colour.RED
    pair: tuple[float, float] = (0.0, 1.0)
    names: tuple[str, ...] = ()


def test_typed_reads_each_kind_and_refuses_what_does_not_fit():
    whole = Whole.from_dict({"part": {"size": 2, "shade": "dark"}, "colour": "red",
                             "pair": [1, 2.5], "names": ["a", "b"]})
    assert whole == Whole(Part(2, "dark"), Colour.RED, (1.0, 2.5), ("a", "b"))
    assert whole.to_dict() == {"part": {"size": 2, "shade": "dark"}, "colour": "red",
                               "pair": [1.0, 2.5], "names": ["a", "b"]}
    for kind, value in ((Part, {"size": 1, "shade": "grey"}), (Part, {"shade": "dark"}),
                        (Part, {"size": 1, "weight": 3}), (Colour, "blue"),
                        (tuple[float, float], [1.0]), (bool, 0), (int, 1.0), (float, "1"),
                        (str, None)):
        with pytest.raises(FieldError):
            typed(kind, value)
    assert typed(float, 3) == 3.0 and isinstance(typed(float, 3), float)
    assert typed(int | None, None) is None


@pytest.mark.parametrize("cls, data, says", [
    (ModelConfig, {"d_input": 3, "n_classes": 2, "a_range": float("nan")}, "a_range in the model config must be finite, got nan"),
    (ProgramSettings, {"settle_s": float("inf")}, "settle_s in the programming settings must be finite"),
    (DataSpec, {"augment": {"copies": 1, "snr_db": [0.0, float("inf")]}}, "snr_db in the augmentation settings must be finite"),
])
def test_numbers_in_a_file_must_be_finite(cls, data, says):
    with pytest.raises(ConfigError, match=says):
        cls.from_dict(json.loads(json.dumps(data)))  # JSON files can hold NaN and Infinity
