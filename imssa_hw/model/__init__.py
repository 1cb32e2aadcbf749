"""The trained model as data, without torch: its configuration (`config`), the checkpoint file
(`checkpoint`: safetensors plus JSON, the quantized kernels) and the numpy twin of the
classifier that the host runs around the crossbar (`reference`).

May import: numpy, safetensors, `imssa_hw.errors`, `imssa_hw.files`. The compiler and the
hardware-in-the-loop code build on it; nothing here imports torch or the layers above.
"""
