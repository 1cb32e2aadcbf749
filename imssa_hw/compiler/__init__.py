"""The compiler: a quantized S4D checkpoint -> crossbar conductance targets and a loop schedule.

Public entry points (numpy only, no torch):

    profile = load_board_profile("board-default")          # imssa_hw.board; or a TOML path
    defects = load_defects("defects.json", profile.geometry)   # optional
    deployment = compile_checkpoint(load_checkpoint("model.pt"), profile, defects)
    save_deployment(deployment, "deploy/");  deployment = load_deployment("deploy/")
    executor = Executor.on_maps(deployment.schedule, maps)      # or Executor(schedule, vmm)
    logits = reference.forward(ckpt, features, recurrence=executor)

See docs/compiler.md.

What it may import: docs/architecture.md.
"""

from imssa_hw.compiler.artifact import Deployment, Probe, load_deployment, save_deployment
from imssa_hw.compiler.build import compile_checkpoint
from imssa_hw.compiler.defects import DefectMap, StuckDevice, load_defects
from imssa_hw.compiler.executor import Executor, Vmm, ideal_vmm, per_vector, run_layer
from imssa_hw.compiler.placement import PlacementMode
from imssa_hw.compiler.schedule import LayerSchedule, LoopProgram, Schedule

__all__ = ["DefectMap", "Deployment", "Executor", "LayerSchedule", "LoopProgram", "PlacementMode",
           "Probe", "Schedule", "StuckDevice", "Vmm", "compile_checkpoint", "ideal_vmm",
           "load_defects", "load_deployment", "per_vector", "run_layer", "save_deployment"]
