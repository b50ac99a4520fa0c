"""Masked bank InfoNCE with a trainable payload tower, by gradient caching (lvmcore/training/cached_bank_loss.py),
over a world of two ranks simulated in one process, and on whatever device its inputs are.

A simulated rank's `Gather` concatenates the other rank's ENCODED targets, computed here through the same payload
tower with a graph (as `train.ddp.all_gather_rows` hands back a graph to the rank that owns the rows): every block
of the step backpropagates through that shared graph, and the two ranks' summed gradients, halved (DDP's
average), must equal the one-process step over the concatenated batch.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from lvmcore.keys import pack_keys
from lvmcore.models import PRESETS, build_model
from lvmcore.training.bank_loss import BankBatch
from lvmcore.training.cached_bank_loss import two_tower_bank_step
from helpers.rank_harness import rank_gather

DIM, CONTEXT, BATCH, COLUMNS = 16, 5, 12, 60
HALVES = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(PRESETS["two-tower"](dim=DIM)).eval()
    with torch.no_grad():
        model.payload_tower.proj.weight.normal_(std=0.05)  # off the identity, so the tower's gradient matters
    return model


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


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


@pytest.mark.parametrize("sampled", [False, True])
def test_two_simulated_ranks_equal_one_process_over_the_doubled_batch(sampled: bool) -> None:
    """Micro-batches of 2 rows: three blocks per rank, each backpropagating through the gathered rows' graph."""
    model = make_model()
    contexts, targets, bank = make_bank_batch(BATCH, COLUMNS, seed=6, sampled=sampled)
    model.zero_grad()
    single = two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=2, temperature=0.05)
    reference = gradients(model)
    assert any(name.startswith("payload_tower") for name in reference)

    losses, fewest, summed = [], [], {name: torch.zeros_like(g) for name, g in reference.items()}
    for rank, (own, other) in enumerate([HALVES, HALVES[::-1]]):
        gather = rank_gather(rank, [bank.target_codes[other], lambda other=other: model.encode_bank(targets[other]).float()])
        model.zero_grad()
        step = two_tower_bank_step(model, contexts[own], targets[own], rank_bank(bank, own), micro_batch_size=2, temperature=0.05, gather=gather)
        losses.append(step.loss)
        fewest.append(step.negatives_per_positive)
        for name, g in gradients(model).items():
            summed[name] += g
        assert (step.positives, step.bank_size) == (BATCH // 2, COLUMNS), f"rank {rank}"
    assert sum(losses) / 2 == pytest.approx(single.loss, abs=1e-5), f"rank losses {losses} do not average to the one-process loss {single.loss}"
    assert min(fewest) == single.negatives_per_positive
    for name, g in summed.items():
        torch.testing.assert_close(g / 2, reference[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("sampled", [False, True])
def test_the_step_builds_its_mask_and_labels_on_the_codes_device_not_the_default_one(sampled: bool) -> None:
    """With a default device other than the inputs' (here 'meta'; on a GPU run, cuda vs cpu), a mask or label
    tensor made on the default device cannot meet the columns; the step must place them beside the codes."""
    model = make_model()
    contexts, targets, bank = make_bank_batch(8, 40, seed=3, sampled=sampled)
    expected = two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=3)
    with torch.device("meta"):
        step = two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=3)
    assert step == expected
