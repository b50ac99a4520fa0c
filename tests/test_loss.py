"""InfoNCE over the effective batch: micro-batched gradients equal one big batch, negatives are counted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.training.loss import (
    DEFAULT_TEMPERATURE,
    RngSnapshot,
    info_nce,
    one_tower_step,
    training_step,
    two_tower_step,
)
from lvmcore.models import PRESETS, build_model

DIM, CONTEXT = 16, 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_batch(count: int, seed: int = 0, hard: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    contexts = torch.nn.functional.normalize(torch.randn(count, CONTEXT, DIM, generator=generator), dim=-1)  # (B, C, D)
    targets = torch.nn.functional.normalize(torch.randn(count, DIM, generator=generator), dim=-1)  # (B, D)
    negatives = torch.nn.functional.normalize(torch.randn(count, hard, DIM, generator=generator), dim=-1) if hard else None
    return contexts, targets, negatives


def make_model(preset: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(PRESETS[preset](dim=DIM))


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys() and left
    for name in left:
        torch.testing.assert_close(left[name], right[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def big_batch_gradient(model: torch.nn.Module, contexts, targets, negatives=None) -> tuple[dict[str, torch.Tensor], float]:
    """The reference: one forward over the whole batch, one loss, one backward."""
    model.zero_grad()
    predictions = model(contexts)  # (B, D)
    columns = model.encode_bank(targets)  # (B, D)
    if negatives is not None:
        columns = torch.cat([columns, model.encode_bank(negatives.reshape(-1, DIM))])
    loss = info_nce(predictions, columns, torch.arange(len(targets)), DEFAULT_TEMPERATURE)
    loss.backward()
    return gradients(model), loss.item()


@pytest.mark.parametrize("hard", [0, 2])
def test_one_tower_accumulated_gradient_equals_one_big_batch(hard: int) -> None:
    model = make_model("mamba-xs").eval()  # eval: no dropout, so the two forwards see the same network
    contexts, targets, negatives = make_batch(64, hard=hard)
    reference, reference_loss = big_batch_gradient(model, contexts, targets, negatives)
    model.zero_grad()
    step = one_tower_step(model, contexts, targets, micro_batch_size=16, hard_negatives=negatives)
    assert_same_gradients(gradients(model), reference)
    assert step.loss == pytest.approx(reference_loss, abs=1e-5)
    assert step.negatives_per_positive == 64 * (1 + hard) - 1  # not 16 - 1: every micro-batch sees every target


@pytest.mark.parametrize("hard", [0, 2])
def test_two_tower_gradient_cache_equals_one_big_batch(hard: int) -> None:
    model = make_model("two-tower").eval()
    assert model.tower_count == 2
    contexts, targets, negatives = make_batch(48, hard=hard)
    reference, reference_loss = big_batch_gradient(model, contexts, targets, negatives)
    model.zero_grad()
    step = two_tower_step(model, contexts, targets, micro_batch_size=12, hard_negatives=negatives)
    assert_same_gradients(gradients(model), reference)
    assert step.loss == pytest.approx(reference_loss, abs=1e-5)
    assert step.negatives_per_positive == 48 * (1 + hard) - 1


def test_two_tower_gradient_cache_replays_dropout_masks() -> None:
    """In train mode (dropout on) the re-embedding must reuse step 1's masks, or the cached gradients are wrong."""
    model = make_model("two-tower").train()
    contexts, targets, _ = make_batch(32, seed=3)
    micro = 8
    torch.manual_seed(11)
    # Reference: the same micro-batch forwards in the same order as GradCache's step 1, in one graph.
    predictions = torch.cat([model(contexts[s : s + micro]) for s in range(0, 32, micro)])
    columns = torch.cat([model.encode_bank(targets[s : s + micro]) for s in range(0, 32, micro)])
    model.zero_grad()
    info_nce(predictions, columns, torch.arange(32)).backward()
    reference = gradients(model)
    model.zero_grad()
    torch.manual_seed(11)
    two_tower_step(model, contexts, targets, micro_batch_size=micro)
    assert_same_gradients(gradients(model), reference)


def test_rng_snapshot_replays_the_same_random_numbers() -> None:
    snapshot = RngSnapshot(torch.device("cpu"))
    first = torch.rand(5)
    with snapshot.replay():
        again = torch.rand(5)
    after = torch.rand(5)
    assert torch.equal(first, again)
    assert not torch.equal(after, first)  # replay leaves the outer stream where it was


def test_training_step_picks_the_scheme_by_tower_count() -> None:
    contexts, targets, _ = make_batch(8)
    for preset in ("mamba-xs", "two-tower"):
        model = make_model(preset).eval()
        step = training_step(model, contexts, targets, micro_batch_size=4)
        assert step.negatives_per_positive == 7
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_claimed_1023_negatives_are_the_real_negatives() -> None:
    """FAILURE_MODES row 9: batch 256 x 4 accumulation must give 1,023 negatives per positive, not 255."""
    model = make_model("mamba-xs").eval()
    contexts, targets, _ = make_batch(1024, seed=5)
    step = one_tower_step(model, contexts, targets, micro_batch_size=256)
    assert step.negatives_per_positive == 1023


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(1, 6),
    columns=st.integers(1, 9),
    temperature=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_info_nce_is_between_zero_and_its_uniform_bound(count: int, columns: int, temperature: float, seed: int) -> None:
    """Loss >= 0, and equals log(N) exactly when every score ties (all-zero predictions: no NaN)."""
    columns = max(columns, count)
    rng = np.random.default_rng(seed)
    predictions = torch.tensor(rng.normal(size=(count, 4)), dtype=torch.float32)
    targets = torch.tensor(rng.normal(size=(columns, 4)), dtype=torch.float32)
    labels = torch.arange(count)
    loss = float(info_nce(predictions, targets, labels, temperature))
    assert math.isfinite(loss) and loss >= -1e-6
    tied = float(info_nce(torch.zeros(count, 4), targets, labels, temperature))
    assert tied == pytest.approx(math.log(columns), rel=1e-5)


def test_info_nce_prefers_the_true_target() -> None:
    targets = torch.eye(4)
    right = float(info_nce(targets.clone(), targets, torch.arange(4)))
    wrong = float(info_nce(targets.roll(1, dims=0), targets, torch.arange(4)))
    assert right < 0.01 < math.log(4) < wrong
