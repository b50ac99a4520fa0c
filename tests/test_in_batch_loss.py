"""In-batch InfoNCE, one tower (lvmcore/training/in_batch_loss.py) over a world of two ranks simulated in one process,
and on whatever device its inputs are.

Each simulated rank gets a `Gather` that concatenates the other rank's rows (computed here, in the same process)
around its own, with its offset, as `train.ddp.all_gather_rows` does across processes. The mean of the two
ranks' losses and gradients (what DDP's averaging gives) must equal the one-process step over the concatenated
batch, and each rank's negatives must count both ranks' columns. The two-process test itself is
tests/test_loss.py::test_bank_loss_on_two_ranks_matches_one_process_with_the_doubled_batch (left out of the
mutation run: it spawns processes).
"""

from __future__ import annotations


import pytest
import torch

from lvmcore.training.in_batch_loss import info_nce, one_tower_step, target_columns
from lvmcore.training.loss_common import local_gather
from helpers.loss_batches import CONTEXT, DIM, gradients, make_batch, one_tower_model
from helpers.rank_harness import rank_gather

BATCH = 12
HALVES = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("hard", [0, 2])
def test_two_simulated_ranks_equal_one_process_over_the_doubled_batch(hard: int) -> None:
    model = one_tower_model()
    contexts, targets, negatives = make_batch(BATCH, hard)
    model.zero_grad()
    single = one_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives, temperature=0.1)
    reference = gradients(model)

    losses, summed = [], {name: torch.zeros_like(g) for name, g in reference.items()}
    for rank, (own, other) in enumerate([HALVES, HALVES[::-1]]):
        others = [targets[other]] + ([negatives[other].reshape(-1, DIM)] if hard else [])
        model.zero_grad()
        step = one_tower_step(model, contexts[own], targets[own], micro_batch_size=4, hard_negatives=None if negatives is None else negatives[own],
                              temperature=0.1, gather=rank_gather(rank, others))
        losses.append(step.loss)
        for name, g in gradients(model).items():
            summed[name] += g
        columns = BATCH * (1 + hard)
        assert (step.positives, step.bank_size, step.negatives_per_positive) == (BATCH // 2, columns, columns - 1), f"rank {rank}"
    assert sum(losses) / 2 == pytest.approx(single.loss, abs=1e-5), f"rank losses {losses} do not average to the one-process loss {single.loss}"
    for name, g in summed.items():
        torch.testing.assert_close(g / 2, reference[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_rank_one_scores_its_own_targets_not_rank_zeros() -> None:
    """Rank 1's labels are offset by rank 0's block: its predictions, each equal to its own target, score loss ~0;
    labels pointing at rank 0's columns (an offset left out or subtracted) would score ~log odds far above it."""
    _, targets, _ = make_batch(BATCH, 0, seed=4)

    class Echo(torch.nn.Module):  # predicts each window's own target (stored in the context's first chunk)
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, contexts: torch.Tensor) -> torch.Tensor:
            return contexts[:, 0] * self.scale  # (b, D)

    contexts = targets[:, None, :].expand(BATCH, CONTEXT, DIM)  # (B, C, D)
    own, other = HALVES[1], HALVES[0]
    step = one_tower_step(Echo(), contexts[own], targets[own], micro_batch_size=2, temperature=0.01, gather=rank_gather(1, [targets[other]]))
    assert step.loss < 1e-3, f"rank 1 scored its own targets at loss {step.loss}: its labels do not point at its own columns"


def test_target_columns_are_every_ranks_targets_then_every_ranks_hard_negatives() -> None:
    _, targets, negatives = make_batch(4, 2, seed=2)
    flat = negatives.reshape(-1, DIM)  # (B*k, D)
    other_targets, other_negatives = targets + 1, flat + 1
    columns, offset = target_columns(targets, flat, rank_gather(1, [other_targets, other_negatives]))
    assert offset == 4
    assert torch.equal(columns, torch.cat([other_targets, targets, other_negatives, flat]))
    columns, offset = target_columns(targets, flat[:0], local_gather)
    assert offset == 0 and torch.equal(columns, targets), "an empty set of hard negatives adds no column"


def test_the_step_builds_its_labels_on_the_columns_device_not_the_default_one() -> None:
    """With a default device other than the inputs' (here 'meta'; on a GPU run, cuda vs cpu), a label tensor made
    on the default device cannot index the columns; the step must place it beside them."""
    model = one_tower_model()
    contexts, targets, negatives = make_batch(6, 1, seed=3)
    expected = one_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives)
    with torch.device("meta"):
        step = one_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives)
    assert step.loss == pytest.approx(expected.loss, abs=1e-6) and step.bank_size == 12


def test_info_nce_by_hand_on_two_columns() -> None:
    """cos = (1, 0) against columns (1, 0) and (0, 1): loss = log(1 + exp(-1 / tau)) for label 0, at tau 0.5."""
    predictions = torch.tensor([[2.0, 0.0]])
    columns = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    loss = float(info_nce(predictions, columns, torch.tensor([0]), 0.5))
    assert loss == pytest.approx(float(torch.log1p(torch.exp(torch.tensor(-2.0)))), abs=1e-6)
