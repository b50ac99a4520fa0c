"""The training module: `python -m train` (InfoNCE over the effective batch, checkpoints, history)."""
