"""Masked bank InfoNCE with a trainable payload tower, by gradient caching (lvmcore/training/cached_bank_loss.py),
over a world of two ranks simulated in one process, and on whatever device its inputs are.

A simulated rank's `Gather` concatenates the other rank's ENCODED targets, computed here through the same payload
tower with a graph (as `train.ddp.all_gather_rows` hands back a graph to the rank that owns the rows): every block
of the step backpropagates through that shared graph, and the two ranks' summed gradients, halved (DDP's
average), must equal the one-process step over the concatenated batch.
"""

from __future__ import annotations


import pytest
import torch

from lvmcore.training.cached_bank_loss import two_tower_bank_step
from helpers.loss_batches import gradients, make_bank_batch, rank_bank, two_tower_model
from helpers.rank_harness import rank_gather

BATCH, COLUMNS = 12, 60
HALVES = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("sampled", [False, True])
def test_two_simulated_ranks_equal_one_process_over_the_doubled_batch(sampled: bool) -> None:
    """Micro-batches of 2 rows: three blocks per rank, each backpropagating through the gathered rows' graph."""
    model = two_tower_model()
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
    model = two_tower_model()
    contexts, targets, bank = make_bank_batch(8, 40, seed=3, sampled=sampled)
    expected = two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=3)
    with torch.device("meta"):
        step = two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=3)
    assert step == expected
