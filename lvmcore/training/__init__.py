"""The maths of training that checks also read: the InfoNCE losses and the per-step LR schedule.

The loop itself lives in the `train` package (`python -m train`); a gate check recomputes the
schedule from here to compare it with what training recorded. May import the root modules and torch.
"""
