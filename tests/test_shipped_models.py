"""The models shipped in imssa_hw/models/: they load, they are what the demo asks for with a
task's defaults (or the test says to re-make them), the demo starts from them without training,
--retrain trains, and a modified one is refused."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.board import load_board_profile
from imssa_hw.data import AugmentSpec, DataSpec
from imssa_hw.errors import BadInput
from imssa_hw.model.config import ModelConfig, task_model
from imssa_hw.workflows import demo as demo_workflow
from imssa_hw.workflows import model_cache
from imssa_hw.workflows.demo import TASK_DEMOS, DemoSettings
from imssa_hw.workflows.model_cache import (INDEX, SHIPPED, ModelRecipe, ModelSource,
                                            shipped_checkpoint, shipped_models, trained_model)

SHIPPED_MODELS = shipped_models()
REMAKE = "the shipped model no longer matches the demo's defaults: re-make it with "

TINY = ModelRecipe(DataSpec.default("zero-one", seed=1, n_train_per_class=12, n_test_per_class=6,
                                    mix_synthetic=0, mix_flite=False,
                                    augment=AugmentSpec(copies=1)),
                   {"bits": 2, "h": 2, "n": 4}, epochs=1)
"""A model trained in a few seconds."""


def shipped_settings(name: str) -> DemoSettings:
    """The demo settings the shipped model `name` is for: its task on its board (the task's
    demo board, or another one, e.g. zero-one-board-arc2 for `demo --port arc2://...`)."""
    entry = SHIPPED_MODELS[name]
    return DemoSettings(task=entry["task"], board_profile=entry["board_profile"])


def demo_recipe(name: str) -> ModelRecipe:
    """What the demo asks for with the settings of the shipped model `name`."""
    settings = shipped_settings(name)
    return settings.recipe(load_board_profile(settings.board_profile))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty model cache."""
    monkeypatch.setenv("IMSSA_HW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def trainings(monkeypatch) -> list[ModelRecipe]:
    """Every recipe trained from now on; each trains `TINY` instead, to stay fast."""
    calls = []
    train = ModelRecipe.train

    def tiny(recipe: ModelRecipe, out, **progress):
        calls.append(recipe)
        return train(TINY, out, **progress)
    monkeypatch.setattr(ModelRecipe, "train", tiny)
    return calls


def test_the_shipped_files_are_the_ones_the_index_lists():
    assert "zero-one" in SHIPPED_MODELS  # the default demo's model
    listed = {INDEX, "README.md"}
    for name, entry in SHIPPED_MODELS.items():
        assert entry["checkpoint"] == f"{name}.pt" and entry["report"] == f"{name}.json"
        listed |= {entry["checkpoint"], entry["report"]}
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted(listed)


def test_every_shipped_model_loads_and_is_its_tasks_demo_model():
    for name, entry in SHIPPED_MODELS.items():
        ckpt = shipped_checkpoint(name)  # the digest checked against the content and the index
        report = json.loads((SHIPPED / entry["report"]).read_text())
        settings = shipped_settings(name)
        task = settings.task
        assert name == (task if settings.board_profile == TASK_DEMOS[task].board_profile
                        else f"{task}-{settings.board_profile}")
        assert report["digest"] == ckpt.digest == entry["digest"]
        assert ckpt.config == ModelConfig(d_input=ckpt.config.d_input,
                                          n_classes=len(report["classes"]),
                                          **task_model(task, bits=settings.bits)), name
        assert ckpt.meta["task"] == task and ckpt.config.bits == TASK_DEMOS[task].bits
        assert ckpt.meta["board_profile"] == settings.board_profile
        assert ckpt.meta["hardware_aware"] is True and ckpt.meta["epochs"] == settings.epochs
        assert ckpt.meta["data_spec"] == json.loads(json.dumps(settings.data_spec().to_dict()))
        assert ckpt.meta["loop_scales"], name  # trained for its board: the compiler needs them
        assert report["software_accuracy"] == ckpt.meta["software_accuracy"]


def test_the_shipped_keys_are_what_the_demo_computes_now():
    """A change to the recipe (data, model, training, board profile, generator) must re-make the
    shipped model rather than let the demo use a stale one."""
    for name, entry in SHIPPED_MODELS.items():
        assert entry["key"] == demo_recipe(name).key(), REMAKE + entry["command"]


def test_a_demo_on_an_arc2_port_asks_for_the_model_shipped_for_board_arc2():
    settings = DemoSettings(port="arc2://0?firmware=fw.bin")
    assert (settings.board_profile, settings.finetune) == ("board-arc2", False)
    assert DemoSettings(port="arc2://0?firmware=fw.bin", finetune=True).finetune
    key = settings.recipe(load_board_profile("board-arc2")).key()
    assert SHIPPED_MODELS["zero-one-board-arc2"]["key"] == key


def test_the_demo_defaults_get_the_shipped_model_without_training(cache, trainings):
    for name, entry in SHIPPED_MODELS.items():
        model = trained_model(demo_recipe(name))
        assert model.source == ModelSource.SHIPPED
        assert model.path == SHIPPED / entry["checkpoint"]
        report = json.loads((SHIPPED / entry["report"]).read_text())
        assert model.summary["software_accuracy"] == report["software_accuracy"]
    assert trainings == []
    assert not cache.exists()  # nothing copied into the cache either


def test_other_settings_train_once_then_come_from_the_cache(cache, trainings):
    recipe = DemoSettings(seed=5).recipe(load_board_profile("board-default"))
    first = trained_model(recipe)
    again = trained_model(recipe)
    assert (first.source, again.source) == (ModelSource.TRAINED, ModelSource.CACHED)
    assert first.path == again.path and first.path.parent == cache / "models"
    assert trainings == [recipe]


def test_retrain_trains_even_when_a_shipped_or_cached_model_matches(cache, trainings):
    recipe = demo_recipe("zero-one")
    retrained = trained_model(recipe, retrain=True)
    assert retrained.source == ModelSource.TRAINED and retrained.path.parent == cache / "models"
    assert trained_model(recipe, retrain=True).source == ModelSource.TRAINED  # cached: again
    assert trainings == [recipe, recipe]
    assert trained_model(recipe).source == ModelSource.SHIPPED  # without it: the shipped one


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the shipped folder that `trained_model` reads instead."""
    copy = tmp_path / "models"
    shutil.copytree(SHIPPED, copy)
    monkeypatch.setattr(model_cache, "SHIPPED", copy)
    return copy


def test_a_modified_shipped_model_is_refused(shipped_copy, cache, trainings):
    path = shipped_copy / "zero-one.pt"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="zero-one.*modified or corrupted.*--retrain"):
        trained_model(demo_recipe("zero-one"))
    assert trainings == []


def test_another_checkpoint_in_place_of_a_shipped_one_is_refused(shipped_copy, cache, trainings):
    other = trained_model(TINY).path  # a valid checkpoint, just not the one shipped
    shutil.copyfile(other, shipped_copy / "zero-one.pt")
    with pytest.raises(BadInput, match="is not the checkpoint that was shipped"):
        trained_model(demo_recipe("zero-one"))


@pytest.mark.parametrize("args,bits,board_profile,retrain,finetune", [
    ([], 2, "board-default", False, True),
    (["--task", "digits"], 4, "board-multi", False, False),
    (["--task", "hd20", "--retrain"], 4, "board-multi", True, False),
    (["--task", "custom"], 4, "board-multi", False, False),
    (["--task", "digits", "--bits", "3", "--board-profile", "board-default", "--finetune"], 3,
     "board-default", False, True),
    (["--no-finetune"], 2, "board-default", False, False),
])
def test_demo_options_default_to_the_tasks(monkeypatch, tmp_path, args, bits, board_profile,
                                           retrain, finetune):
    seen = []

    def run_demo(out, settings, echo):
        seen.append(settings)
        raise BadInput("stop here")
    monkeypatch.setattr(demo_workflow, "run_demo", run_demo)
    done = CliRunner().invoke(cli, ["demo", *args, "--out", str(tmp_path / "out")])
    assert done.exit_code == 2 and "stop here" in done.stderr, done.output
    [settings] = seen
    assert (settings.bits, settings.board_profile, settings.retrain,
            settings.finetune) == (bits, board_profile, retrain, finetune)


def test_other_commands_keep_their_defaults():
    from imssa_hw.cli.train import train

    defaults = {p.name: p.default for p in train.params}
    assert defaults["bits"] == "2" and defaults["board_profile"] == "board-default"
