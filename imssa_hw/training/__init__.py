"""Training in torch: fixed-dynamic-range quantization (`quant`), the S4D kernel (`s4d`), the
classifier (`classifier`), the board's analog loop for hardware-aware training
(`hardware_aware`) and the training recipe and its command (`trainer`).

May import: torch, `imssa_hw.model`, `imssa_hw.compiler` (the loop scales, one function for
training and compiling), `imssa_hw.data`, `imssa_hw.errors`, `imssa_hw.files`.
"""
