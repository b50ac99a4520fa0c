"""Small random batches, banks and models for the loss tests (tests' helper): one copy for the five loss test files.

Windows of C = CONTEXT unit vectors of dimension DIM; a bank's windows read C consecutive bank columns and
their target is the next column, so contexts and targets are bank rows with known keys.
"""

from __future__ import annotations

import numpy as np
import torch

from lvmcore.keys import pack_keys
from lvmcore.models import PRESETS, build_model
from lvmcore.training.bank_loss import BankBatch

DIM, CONTEXT = 16, 5


def make_batch(count: int, hard: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """contexts (B, C, D), targets (B, D) and `hard` negatives per window (B, k, D) (None for 0), all unit vectors."""
    generator = torch.Generator().manual_seed(seed)
    contexts = torch.nn.functional.normalize(torch.randn(count, CONTEXT, DIM, generator=generator), dim=-1)  # (B, C, D)
    targets = torch.nn.functional.normalize(torch.randn(count, DIM, generator=generator), dim=-1)  # (B, D)
    negatives = torch.nn.functional.normalize(torch.randn(count, hard, DIM, generator=generator), dim=-1) if hard else None  # (B, k, D)
    return contexts, targets, negatives


def make_bank_batch(count: int, columns: int, seed: int = 0, sampled: bool = False) -> tuple[torch.Tensor, torch.Tensor, BankBatch]:
    """contexts (B, C, D), targets (B, D) and a full (or sampled) bank where each context holds C bank chunks."""
    generator = torch.Generator().manual_seed(seed)
    bank = torch.nn.functional.normalize(torch.randn(columns, DIM, generator=generator), dim=-1)  # (K, D)
    codes = torch.from_numpy(pack_keys(np.array([(seed, c) for c in range(columns)])))  # (K,) unique keys
    rows = torch.randperm(columns - CONTEXT, generator=generator)[:count]  # window i reads columns rows[i]..+C-1, target +C
    context_columns = rows[:, None] + torch.arange(CONTEXT)  # (B, C)
    positives = rows + CONTEXT  # (B,)
    contexts, targets = bank[context_columns], bank[positives]  # (B, C, D), (B, D)
    if sampled:
        keep = torch.ones(columns, dtype=torch.bool)
        keep[positives] = False  # the step's targets are columns already
        return contexts, targets, BankBatch(bank[keep], codes[keep], codes[context_columns], codes[positives])
    return contexts, targets, BankBatch(bank, codes, codes[context_columns], codes[positives], positive_columns=positives)


def rank_bank(bank: BankBatch, own: slice) -> BankBatch:
    """One rank's share of the windows; the bank rows are the same on every rank."""
    positives = None if bank.sampled else bank.positive_columns[own]
    return BankBatch(bank.vectors, bank.codes, bank.context_codes[own], bank.target_codes[own], positives)


def one_tower_model(seed: int = 0) -> torch.nn.Module:
    """A small mamba-xs in eval mode (no dropout: two forwards see the same network)."""
    torch.manual_seed(seed)
    return build_model(PRESETS["mamba-xs"](dim=DIM)).eval()


def two_tower_model(seed: int = 0) -> torch.nn.Module:
    """A small two-tower model in eval mode whose payload tower is off the identity, so its gradient matters."""
    torch.manual_seed(seed)
    model = build_model(PRESETS["two-tower"](dim=DIM)).eval()
    with torch.no_grad():
        model.payload_tower.proj.weight.normal_(std=0.05)
    return model


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's gradient, copied (parameters without one are left out)."""
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
