"""The whole flow from Python on an emulated board: shipped model -> calibrate -> compile ->
program -> infer. Runs in about half a minute on a laptop's CPU; CI runs it.

    python examples/quickstart.py [PORT]     (default emu://?seed=1, a board in this process)
"""

import sys

import imssa_hw as hw

port = sys.argv[1] if len(sys.argv) > 1 else "emu://?seed=1"
model = hw.shipped_model("zero-one")                   # 16 kernels, 2 bits per device
with hw.open_board(port) as board:
    run = hw.calibrate(board)                          # read chain, device curves, defects
    dep = hw.compile(model, "board-default", calibration=run)
    programmed = hw.program(board, dep, calibration=run)
    result = hw.infer(board, dep, model, calibration=run, limit=100)

print(f"programmed {dep.summary['cells_used']} devices, "
      f"{100 * programmed.report['yield_working']:.1f} % within tolerance")
print(f"software {100 * result.software_accuracy:.0f} %, hardware "
      f"{100 * result.hardware_accuracy:.0f} %, agreement {100 * result.agreement:.0f} % "
      f"on {len(result.labels)} recordings of a speaker the model never heard")
