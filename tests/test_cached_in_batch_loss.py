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

from lvmcore.models import PRESETS, build_model
from lvmcore.training.cached_in_batch_loss import two_tower_step
from helpers.rank_harness import rank_gather

DIM, CONTEXT, BATCH = 16, 5, 12
HALVES = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_batch(count: int, hard: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    contexts = torch.nn.functional.normalize(torch.randn(count, CONTEXT, DIM, generator=generator), dim=-1)  # (B, C, D)
    targets = torch.nn.functional.normalize(torch.randn(count, DIM, generator=generator), dim=-1)  # (B, D)
    negatives = torch.nn.functional.normalize(torch.randn(count, hard, DIM, generator=generator), dim=-1) if hard else None  # (B, k, D)
    return contexts, targets, negatives


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(PRESETS["two-tower"](dim=DIM)).eval()
    with torch.no_grad():
        model.payload_tower.proj.weight.normal_(std=0.05)  # off the identity, so the tower's gradient matters
    return model


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("hard", [0, 2])
def test_two_simulated_ranks_equal_one_process_over_the_doubled_batch(hard: int) -> None:
    model = make_model()
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
    model = make_model()
    contexts, targets, negatives = make_batch(6, 1, seed=3)
    expected = two_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives)
    with torch.device("meta"):
        step = two_tower_step(model, contexts, targets, micro_batch_size=4, hard_negatives=negatives)
    assert step.loss == pytest.approx(expected.loss, abs=1e-6) and step.bank_size == 12
