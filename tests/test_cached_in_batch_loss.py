"""In-batch InfoNCE with a trainable payload tower, by gradient caching (lvmcore/training/cached_in_batch_loss.py),
over a world of two ranks simulated in one process, and on whatever device its inputs are.

Each simulated rank's `Gather` concatenates the other rank's ENCODED rows, computed here through the same payload
tower with a graph: the gradient rank 1's loss sends to rank 0's rows reaches the shared weights, as
`train.ddp.all_gather_rows` sends it back to the rank that owns them. The two ranks' summed gradients, halved
(DDP's average), must equal the one-process step over the concatenated batch.
"""

from __future__ import annotations


import pytest
import torch

from lvmcore.training.cached_in_batch_loss import two_tower_step
from helpers.loss_batches import DIM, gradients, make_batch, two_tower_model
from helpers.rank_harness import rank_gather

BATCH = 12
HALVES = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("hard", [0, 2])
def test_two_simulated_ranks_equal_one_process_over_the_doubled_batch(hard: int) -> None:
    model = two_tower_model()
    contexts, targets, negatives = make_batch(BATCH, hard)
    model.zero_grad()
    single = two_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives, temperature=0.1)
    reference = gradients(model)
    assert any(name.startswith("payload_tower") for name in reference)

    losses, summed = [], {name: torch.zeros_like(g) for name, g in reference.items()}
    for rank, (own, other) in enumerate([HALVES, HALVES[::-1]]):
        others = [lambda other=other: model.encode_bank(targets[other]).float()]
        if hard:
            others.append(lambda other=other: model.encode_bank(negatives[other].reshape(-1, DIM)).float())
        model.zero_grad()
        step = two_tower_step(model, contexts[own], targets[own], micro_batch_size=4, hard_negatives=None if negatives is None else negatives[own],
                              temperature=0.1, gather=rank_gather(rank, others))
        losses.append(step.loss)
        for name, g in gradients(model).items():
            summed[name] += g
        columns = BATCH * (1 + hard)
        assert (step.positives, step.bank_size, step.negatives_per_positive) == (BATCH // 2, columns, columns - 1), f"rank {rank}"
    assert sum(losses) / 2 == pytest.approx(single.loss, abs=1e-5), f"rank losses {losses} do not average to the one-process loss {single.loss}"
    for name, g in summed.items():
        torch.testing.assert_close(g / 2, reference[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_the_step_builds_its_labels_on_the_columns_device_not_the_default_one() -> None:
    """With a default device other than the inputs' (here 'meta'; on a GPU run, cuda vs cpu), a label tensor made
    on the default device cannot index the columns; the step must place it beside them."""
    model = two_tower_model()
    contexts, targets, negatives = make_batch(6, 1, seed=3)
    expected = two_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives)
    with torch.device("meta"):
        step = two_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives)
    assert step.loss == pytest.approx(expected.loss, abs=1e-6) and step.bank_size == 12
