"""Hardware in the loop: inference on a board (`inference`, its report and figures in
`inference_plots`), chip-in-the-loop fine-tuning (`finetune`) and the error budget (`budget`).

May import: `imssa_hw.model`, `imssa_hw.compiler`, `imssa_hw.drivers`, `imssa_hw.calibration`,
`imssa_hw.programming`, `imssa_hw.data`, `imssa_hw.training` (fine-tuning only).
"""
