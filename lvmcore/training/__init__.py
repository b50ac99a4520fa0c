"""The maths of training that checks also read: the InfoNCE losses, the negatives they guarantee, the LR schedule.

One loss per file (`in_batch_loss`, `cached_in_batch_loss`, `bank_loss`, `cached_bank_loss`), GradCache
(`grad_cache`), what they share (`loss_common`), the step the loop calls (`loss.training_step`), the
negatives arithmetic a gate check re-reads (`negatives`) and the per-step LR schedule (`schedule`),
which a gate check recomputes to compare with what training recorded. The loop itself lives in the
`train` package (`python -m train`). May import `lvmcore.models`, the root modules and torch.
"""
