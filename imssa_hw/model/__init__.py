"""The trained model as data, without torch: its configuration (`config`), the checkpoint file
(`checkpoint`: safetensors plus JSON, the quantized kernels), the numpy twin of the
classifier that the host runs around the crossbar (`reference`), and the model as a board runs
it, which the compiler and hardware-aware training share: each kernel's matrix in levels and its
tile of conductances (`mapping`), the scales of its states and outputs for the board's
converters (`loop_scales`).

Numpy and safetensors, never torch. What it may import: docs/architecture.md.
"""
