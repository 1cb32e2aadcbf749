"""Training in torch: fixed-dynamic-range quantization (`quant`), the S4D kernel (`s4d`), the
classifier (`classifier`), the board's analog loop for hardware-aware training
(`hardware_aware`) and the training recipe and its command (`trainer`).
It does not import the compiler: what both need (the board profile, the mapping, the loop
scales) is below both. What it may import: docs/architecture.md.
"""
