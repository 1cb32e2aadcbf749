"""Hardware in the loop: inference on a board (`inference`, its report and figures in
`inference_plots`), chip-in-the-loop fine-tuning (`finetune`) and the error budget (`budget`).

What it may import: docs/architecture.md.
"""
