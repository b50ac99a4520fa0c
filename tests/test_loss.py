"""InfoNCE over the effective batch and over a masked bank: micro-batched gradients equal one big batch,
the masked bank loss equals a brute-force softmax, masked columns never count, negatives are counted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.keys import pack_keys
from lvmcore.training.bank_loss import BankBatch, bank_info_nce, bank_mask, one_tower_bank_step
from lvmcore.training.loss_common import DEFAULT_TEMPERATURE
from lvmcore.training.cached_bank_loss import two_tower_bank_step
from lvmcore.training.cached_in_batch_loss import two_tower_step
from lvmcore.training.grad_cache import RngSnapshot
from lvmcore.training.in_batch_loss import info_nce, one_tower_step
from lvmcore.training.loss import training_step
from lvmcore.training.negatives import expected_negatives_per_positive, sample_bank_rows
from lvmcore.models import PRESETS, build_model
from helpers.loss_batches import CONTEXT, DIM, gradients, make_bank_batch, make_batch
from helpers.rank_harness import spawn_ranks


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(preset: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(PRESETS[preset](dim=DIM))


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


# --------------------------------------------------------------------------- bank negatives


def small_bank(columns: int = 12, count: int = 4, seed: int = 0):
    """A bank of `columns` keyed vectors (one key duplicated) and `count` windows whose context keys are bank keys.

    Returns (vectors (K, D), codes (K,), context_codes (B, C), target_codes (B,), positives (B,)).
    """
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.nn.functional.normalize(torch.randn(columns, DIM, generator=generator), dim=-1)  # (K, D)
    keys = np.array([(1, c) for c in range(columns)])
    keys[-1] = keys[2]  # column K-1 duplicates the key of column 2
    codes = torch.from_numpy(pack_keys(keys))  # (K,)
    rng = np.random.default_rng(seed)
    positives = torch.tensor([2, 5, 7, 0][:count])  # window 0's target key is held by columns 2 and K-1
    context_columns = np.stack([rng.choice(np.setdiff1d(np.arange(columns - 1), [p, 2]), CONTEXT, replace=False) for p in positives.tolist()])
    context_codes = codes[torch.from_numpy(context_columns)]  # (B, C)
    return vectors, codes, context_codes, codes[positives], positives


def brute_force_bank_loss(predictions: np.ndarray, vectors: np.ndarray, codes: np.ndarray, context_codes: np.ndarray,
                          target_codes: np.ndarray, positives: np.ndarray, temperature: float) -> float:
    """The formula in lvmcore/training/bank_loss.py, one window and one column at a time in plain Python."""
    total = 0.0
    for i in range(len(predictions)):
        p = predictions[i] / np.linalg.norm(predictions[i])
        kept = []
        for j in range(len(vectors)):
            context_key = int(codes[j]) in {int(c) for c in context_codes[i]}
            duplicate_target = int(codes[j]) == int(target_codes[i]) and j != int(positives[i])
            if j == int(positives[i]) or not (context_key or duplicate_target):
                kept.append(j)
        scores = {j: float(p @ (vectors[j] / np.linalg.norm(vectors[j]))) / temperature for j in kept}
        top = max(scores.values())
        log_denominator = top + math.log(sum(math.exp(v - top) for v in scores.values()))
        total += log_denominator - scores[int(positives[i])]
    return total / len(predictions)


def test_masked_bank_loss_equals_a_brute_force_softmax() -> None:
    vectors, codes, context_codes, target_codes, positives = small_bank()
    predictions = torch.randn(4, DIM, generator=torch.Generator().manual_seed(9))
    mask = bank_mask(codes, positives, context_codes, target_codes)
    loss = float(bank_info_nce(predictions, vectors, positives, mask, temperature=0.05))
    expected = brute_force_bank_loss(predictions.numpy(), vectors.numpy(), codes.numpy(), context_codes.numpy(),
                                     target_codes.numpy(), positives.numpy(), 0.05)
    assert loss == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert mask[0, 11] and not mask[0, 2], "window 0: the duplicate of its target key is masked, its positive is not"
    assert mask.sum(dim=1).tolist() == [CONTEXT + 1, CONTEXT, CONTEXT, CONTEXT]
    unmasked = float(bank_info_nce(predictions, vectors, positives, torch.zeros_like(mask), temperature=0.05))
    assert unmasked > loss, "masking columns removes terms from the denominator: the loss must drop"


def test_a_masked_column_never_contributes_to_the_loss_or_its_gradient() -> None:
    """Give window 0's masked columns (its context chunks, its target's duplicate) the best score it could
    give: loss and gradients stay the same to the bit. The same change to one unmasked negative shows up."""
    vectors, codes, context_codes, target_codes, positives = small_bank()
    window = slice(0, 1)
    mask = bank_mask(codes, positives[window], context_codes[window], target_codes[window])  # (1, K)
    prediction = torch.randn(1, DIM, generator=torch.Generator().manual_seed(9))

    def loss_and_grads(columns: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        p, c = prediction.clone().requires_grad_(True), columns.clone().requires_grad_(True)
        loss = bank_info_nce(p, c, positives[window], mask, temperature=0.05)
        loss.backward()
        return float(loss.detach()), p.grad, c.grad

    base_loss, base_pred_grad, base_column_grad = loss_and_grads(vectors)
    masked = torch.nonzero(mask[0]).flatten()
    assert len(masked) == CONTEXT + 1
    best = prediction[0] / prediction[0].norm()  # cosine 1 with the prediction: the largest score there is
    changed = vectors.clone()
    changed[masked] = best
    changed_loss, changed_pred_grad, changed_column_grad = loss_and_grads(changed)
    assert changed_loss == base_loss, f"changing masked columns moved the loss {base_loss} -> {changed_loss}"
    assert torch.equal(changed_pred_grad, base_pred_grad), "changing masked columns moved the prediction's gradient"
    assert torch.equal(changed_column_grad, base_column_grad)
    assert torch.count_nonzero(base_column_grad[masked]) == 0, "a masked column received a gradient"
    negative = next(j for j in range(len(vectors)) if not mask[0, j] and j != int(positives[0]))
    control = vectors.clone()
    control[negative] = best
    assert loss_and_grads(control)[0] > base_loss + 1.0, "the same change to an unmasked negative must raise the loss"


@pytest.mark.parametrize("sampled", [False, True])
def test_one_tower_bank_step_micro_batches_equal_one_big_batch(sampled: bool) -> None:
    model = make_model("mamba-xs").eval()
    contexts, targets, bank = make_bank_batch(48, 200, sampled=sampled)
    columns = torch.cat([targets, bank.vectors]) if sampled else bank.vectors
    codes = torch.cat([bank.target_codes, bank.codes]) if sampled else bank.codes
    labels = torch.arange(48) if sampled else bank.positive_columns
    model.zero_grad()
    mask = bank_mask(codes, labels, bank.context_codes, bank.target_codes)
    reference_loss = bank_info_nce(model(contexts), columns, labels, mask, 0.05)
    reference_loss.backward()
    reference = gradients(model)
    model.zero_grad()
    step = one_tower_bank_step(model, contexts, targets, bank, micro_batch_size=16, temperature=0.05)
    assert_same_gradients(gradients(model), reference)
    assert step.loss == pytest.approx(float(reference_loss.detach()), abs=1e-5)
    assert step.bank_size == 200
    assert step.masked_per_positive == pytest.approx(mask.sum(1).float().mean().item())
    if sampled:  # a context chunk is a column only when it is another window's target
        assert step.negatives_per_positive == 200 - 1 - int(mask.sum(1).max()) >= 200 - 1 - CONTEXT
    else:  # every context chunk is in the full bank: each positive sees exactly K - 1 - C
        assert step.negatives_per_positive == 200 - 1 - CONTEXT and step.masked_per_positive == CONTEXT


@pytest.mark.parametrize("sampled", [False, True])
def test_two_tower_bank_step_gradient_cache_equals_one_big_batch(sampled: bool) -> None:
    model = make_model("two-tower").eval()
    with torch.no_grad():
        model.payload_tower.proj.weight.normal_(std=0.05)  # move the tower off the identity so its gradient matters
    contexts, targets, bank = make_bank_batch(24, 90, seed=2, sampled=sampled)
    model.zero_grad()
    raw = torch.cat([targets, bank.vectors]) if sampled else bank.vectors
    codes = torch.cat([bank.target_codes, bank.codes]) if sampled else bank.codes
    labels = torch.arange(24) if sampled else bank.positive_columns
    mask = bank_mask(codes, labels, bank.context_codes, bank.target_codes)
    reference_loss = bank_info_nce(model(contexts), model.encode_bank(raw), labels, mask, 0.05)
    reference_loss.backward()
    reference = gradients(model)
    model.zero_grad()
    step = two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=8, temperature=0.05)
    assert_same_gradients(gradients(model), reference)
    assert step.loss == pytest.approx(float(reference_loss.detach()), abs=1e-5)
    assert any(name.startswith("payload_tower") for name in reference)


def test_sampled_bank_is_deterministic_per_seed_and_never_draws_a_target() -> None:
    codes = pack_keys(np.array([(a, c) for a in range(20) for c in range(50)]))  # (1000,)
    excluded = codes[[3, 77, 500]]
    draw = lambda seed: sample_bank_rows(codes, excluded, 64, np.random.default_rng([seed, 0, 0, 0xBA4C]))  # noqa: E731
    first, again, other = draw(0), draw(0), draw(1)
    assert np.array_equal(first, again), "one seed, two samples"
    assert not np.array_equal(first, other), "the seed changes nothing"
    assert len(first) == 64 == len(np.unique(first)) and np.all(np.diff(first) > 0)
    assert not np.isin(codes[first], excluded).any(), "a step's target key was drawn as a sampled negative"
    assert len(sample_bank_rows(codes[:10], excluded[:1], 64, np.random.default_rng(0))) == 9  # capped at the eligible rows

    model = make_model("mamba-xs").eval()
    contexts, targets, _ = make_bank_batch(16, 200, sampled=True)
    bank_vectors = torch.nn.functional.normalize(torch.randn(1000, DIM, generator=torch.Generator().manual_seed(4)), dim=-1)

    def step_with(seed: int) -> tuple[float, dict[str, torch.Tensor]]:
        rows = draw(seed)
        bank = BankBatch(bank_vectors[rows], torch.from_numpy(codes[rows]), torch.from_numpy(codes[:16 * CONTEXT].reshape(16, CONTEXT)), torch.from_numpy(excluded[[0, 1, 2] * 5 + [0]]))
        model.zero_grad()
        return one_tower_bank_step(model, contexts, targets, bank, micro_batch_size=8).loss, gradients(model)

    (loss_a, grads_a), (loss_b, grads_b), (loss_c, _) = step_with(0), step_with(0), step_with(1)
    assert loss_a == loss_b
    assert all(torch.equal(grads_a[name], grads_b[name]) for name in grads_a)
    assert loss_a != loss_c


def test_training_step_refuses_hard_negatives_with_a_bank() -> None:
    model = make_model("mamba-xs").eval()
    contexts, targets, bank = make_bank_batch(8, 50)
    _, _, negatives = make_batch(8, hard=1)
    with pytest.raises(ValueError, match="hard negatives are for the in-batch loss"):
        training_step(model, contexts, targets, bank=bank, hard_negatives=negatives, micro_batch_size=4)
    assert training_step(model, contexts, targets, bank=bank, hard_negatives=None, micro_batch_size=4).bank_size == 50


def test_expected_negatives_per_positive_for_each_loss() -> None:
    in_batch = {"loss": "in_batch", "batch_size": 256, "accumulation": 4, "world_size": 1}
    assert expected_negatives_per_positive(in_batch) == 1023
    assert expected_negatives_per_positive({**in_batch, "world_size": 2, "hard_negatives": 1}) == 2 * 1024 * 2 - 1
    old_run = {"batch_size": 256, "accumulation": 1}  # a history written before "loss" existed
    assert expected_negatives_per_positive(old_run) == 255
    bank = {"loss": "bank", "bank_size": 7285, "context_length": 5, "bank_key_multiplicity": 1}
    assert expected_negatives_per_positive(bank) == 7285 - 1 - 5
    assert expected_negatives_per_positive({**bank, "bank_key_multiplicity": 2}) == 7285 - 1 - (5 * 2 + 1)
    with pytest.raises(ValueError, match="unknown loss"):
        expected_negatives_per_positive({"loss": "triplet"})


# --------------------------------------------------------------------------- bank negatives over two processes

BANK_CASES = [("mamba-xs", False), ("mamba-xs", True), ("two-tower", False), ("two-tower", True)]
DDP_BATCH, DDP_COLUMNS, DDP_MICRO = 16, 80, 4


def bank_inputs_for(rank_rows: slice, sampled: bool) -> tuple[torch.Tensor, torch.Tensor, BankBatch]:
    """This rank's windows of one fixed batch and its bank (full: the whole bank; sampled: the same rows on every rank)."""
    contexts, targets, bank = make_bank_batch(DDP_BATCH, DDP_COLUMNS, seed=6, sampled=sampled)
    positives = None if sampled else bank.positive_columns[rank_rows]
    return contexts[rank_rows], targets[rank_rows], BankBatch(bank.vectors, bank.codes, bank.context_codes[rank_rows], bank.target_codes[rank_rows], positives)


def bank_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from train.ddp import all_gather_rows, average_gradients, mean_over_ranks

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = {}
        for preset, sampled in BANK_CASES:
            model = make_model(preset).eval()
            share = slice(rank * DDP_BATCH // 2, (rank + 1) * DDP_BATCH // 2)
            contexts, targets, bank = bank_inputs_for(share, sampled)
            step = training_step(model, contexts, targets, bank=bank, micro_batch_size=DDP_MICRO, gather=all_gather_rows, temperature=0.05)
            average_gradients(model)
            results[f"{preset}/{sampled}"] = {"grads": gradients(model), "loss": mean_over_ranks(step.loss, torch.device("cpu")), "bank_size": step.bank_size}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_bank_results(tmp_path_factory) -> dict:
    return spawn_ranks(bank_worker, 2, tmp_path_factory.mktemp("bankddp") / "rank0.pt")


@pytest.mark.parametrize("preset,sampled", BANK_CASES)
def test_bank_loss_on_two_ranks_matches_one_process_with_the_doubled_batch(preset: str, sampled: bool, two_rank_bank_results: dict) -> None:
    """Full bank: each rank scores its own windows against the whole bank; sampled: the targets of both ranks are columns."""
    distributed = two_rank_bank_results[f"{preset}/{sampled}"]
    model = make_model(preset).eval()
    contexts, targets, bank = bank_inputs_for(slice(0, DDP_BATCH), sampled)
    single = training_step(model, contexts, targets, bank=bank, micro_batch_size=DDP_MICRO, temperature=0.05)
    assert distributed["bank_size"] == single.bank_size
    assert distributed["loss"] == pytest.approx(single.loss, abs=1e-5)
    assert_same_gradients(distributed["grads"], gradients(model))


# --------------------------------------------------------------------------- boundaries the mutation run found unpinned


def test_expected_negatives_default_to_one_of_each_multiplier() -> None:
    """A history config that leaves out accumulation, world size, hard negatives or key multiplicity means 1, 1, 0 and 1."""
    assert expected_negatives_per_positive({"batch_size": 8}) == 7
    assert expected_negatives_per_positive({"batch_size": 8, "hard_negatives": None}) == 7
    assert expected_negatives_per_positive({"loss": "bank", "bank_size": 100, "context_length": 5}) == 100 - 1 - 5


def test_training_step_sends_a_two_tower_model_with_a_bank_through_its_payload_tower() -> None:
    model = make_model("two-tower").eval()
    with torch.no_grad():
        model.payload_tower.proj.weight.normal_(std=0.05)
    contexts, targets, bank = make_bank_batch(12, 60, seed=3)
    model.zero_grad()
    step = training_step(model, contexts, targets, bank=bank, micro_batch_size=4)
    assert any(name.startswith("payload_tower") for name in gradients(model)), "the bank was not encoded by the payload tower"
    model.zero_grad()
    assert step.loss == pytest.approx(two_tower_bank_step(model, contexts, targets, bank, micro_batch_size=4).loss, abs=1e-6)
    assert (step.positives, step.bank_size, step.negatives_per_positive, step.masked_per_positive) == (12, 60, 60 - 1 - CONTEXT, CONTEXT)


@pytest.mark.parametrize("preset", ["mamba-xs", "two-tower"])
def test_training_step_hands_the_targets_to_a_sampled_bank(preset: str) -> None:
    """A sampled bank's columns start with the step's own targets: the loss of training_step is the direct step's."""
    direct = one_tower_bank_step if preset == "mamba-xs" else two_tower_bank_step
    model = make_model(preset).eval()
    contexts, targets, bank = make_bank_batch(12, 60, seed=4, sampled=True)
    expected = direct(model, contexts, targets, bank, micro_batch_size=4).loss
    step = training_step(model, contexts, targets, bank=bank, micro_batch_size=4)
    assert step.loss == pytest.approx(expected, abs=1e-6) and step.bank_size == 60


def test_a_model_without_tower_count_is_one_tower() -> None:
    class Plain(torch.nn.Module):  # any nn.Module mapping contexts to predictions
        def __init__(self) -> None:
            super().__init__()
            self.inner = make_model("mamba-xs").eval()

        def forward(self, contexts: torch.Tensor) -> torch.Tensor:
            return self.inner(contexts)

    contexts, targets, _ = make_batch(8)
    step = training_step(Plain(), contexts, targets, micro_batch_size=4)
    assert (step.positives, step.negatives_per_positive) == (8, 7)
    _, _, bank = make_bank_batch(8, 50)
    assert training_step(Plain(), contexts, targets, bank=bank, micro_batch_size=4).positives == 8


def test_the_hard_negative_refusal_says_why() -> None:
    model = make_model("mamba-xs").eval()
    contexts, targets, bank = make_bank_batch(8, 50)
    _, _, negatives = make_batch(8, hard=1)
    with pytest.raises(ValueError, match=r"^hard negatives are for the in-batch loss: the bank already holds every same-article chunk$"):
        training_step(model, contexts, targets, bank=bank, hard_negatives=negatives, micro_batch_size=4)


def test_info_nce_is_the_cross_entropy_of_cosines_over_the_temperature() -> None:
    """By hand, with rows that are not unit vectors: each row normalised on its own, then softmax over the columns."""
    predictions = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    columns = torch.tensor([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    labels = torch.tensor([1, 0])
    cosines = torch.tensor([[0.6, 0.8, 7 / (5 * 2**0.5)], [1.0, 0.0, 2**-0.5]])
    expected = torch.nn.functional.cross_entropy(cosines / 0.5, labels)
    assert float(info_nce(predictions, columns, labels, 0.5)) == pytest.approx(float(expected), abs=1e-6)
    mask = torch.tensor([[False, False, True], [False, False, False]])
    masked = torch.nn.functional.cross_entropy((cosines / 0.5).masked_fill(mask, float("-inf")), labels)
    assert float(bank_info_nce(predictions, columns, labels, mask, 0.5)) == pytest.approx(float(masked), abs=1e-6)


def test_in_batch_steps_use_the_given_temperature_and_report_what_they_scored() -> None:
    contexts, targets, _ = make_batch(8)
    for preset in ("mamba-xs", "two-tower"):
        model = make_model(preset).eval()
        with torch.no_grad():
            expected = float(info_nce(model(contexts), model.encode_bank(targets) if preset == "two-tower" else targets, torch.arange(8), 0.5))
        step = training_step(model, contexts, targets, micro_batch_size=3, temperature=0.5)
        assert step.loss == pytest.approx(expected, abs=1e-5), preset
        assert (step.positives, step.negatives_per_positive, step.bank_size) == (8, 7, 8), preset


def test_one_hard_negative_is_a_column() -> None:
    contexts, targets, negatives = make_batch(1, hard=1)
    step = training_step(make_model("mamba-xs").eval(), contexts, targets, hard_negatives=negatives, micro_batch_size=1)
    assert (step.negatives_per_positive, step.bank_size) == (1, 2)


def test_an_empty_batch_masks_nothing_and_micro_batches_of_one_are_allowed() -> None:
    codes = torch.from_numpy(pack_keys(np.array([(0, c) for c in range(4)])))
    mask = bank_mask(codes, torch.zeros(0, dtype=torch.int64), torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    assert mask.shape == (0, 4)
    from lvmcore.training.loss_common import micro_slices

    assert micro_slices(3, 1) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    with pytest.raises(ValueError, match=r"^micro-batch size must be >= 1, got 0$"):
        micro_slices(3, 0)
