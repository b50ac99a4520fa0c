"""Masked bank InfoNCE, one tower (lvmcore/training/bank_loss.py): the mask against a brute force over random keys
with duplicates, the labels and columns of a sampled bank on rank 1 of two, two ranks simulated in one process
against one process over the doubled batch, and the step on whatever device its inputs are.

A simulated rank's `Gather` concatenates the other rank's rows (computed here, in the same process) around its
own, with its offset, as `train.ddp.all_gather_rows` does across processes; the two-process test is
tests/test_loss.py::test_bank_loss_on_two_ranks_matches_one_process_with_the_doubled_batch (left out of the
mutation run: it spawns processes).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.training.bank_loss import bank_labels_and_codes, bank_mask, mask_summary, one_tower_bank_step
from lvmcore.training.loss_common import local_gather
from helpers.loss_batches import gradients, make_bank_batch, one_tower_model, rank_bank
from helpers.rank_harness import rank_gather

BATCH, COLUMNS = 12, 60
HALVES = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_force_mask(column_codes: list[int], positives: list[int], context_codes: list[list[int]], target_codes: list[int]) -> np.ndarray:
    """bank_mask's rule one window and one column at a time: mask a column holding one of the window's context
    keys, or its target's key, unless it is the window's positive."""
    mask = np.zeros((len(positives), len(column_codes)), dtype=bool)
    for i, positive in enumerate(positives):
        for j, code in enumerate(column_codes):
            mask[i, j] = j != positive and (code in context_codes[i] or code == target_codes[i])
    return mask


@settings(max_examples=150, deadline=None)
@given(data=st.data(), columns=st.integers(1, 12), count=st.integers(1, 5), context=st.integers(0, 4))
def test_bank_mask_equals_a_brute_force_over_keys_with_duplicates(data: st.DataObject, columns: int, count: int, context: int) -> None:
    """Keys drawn from a few values, so a key is held by up to every column (multiplicity m up to K), and context
    keys that no column holds; each window's target key is its positive column's key, as in both banks."""
    key = st.integers(-3, 3).map(lambda v: v * 1_000_003)
    column_codes = data.draw(st.lists(key, min_size=columns, max_size=columns))
    positives = data.draw(st.lists(st.integers(0, columns - 1), min_size=count, max_size=count))
    context_codes = data.draw(st.lists(st.lists(st.integers(-4, 4).map(lambda v: v * 1_000_003), min_size=context, max_size=context), min_size=count, max_size=count))
    target_codes = [column_codes[p] for p in positives]
    mask = bank_mask(torch.tensor(column_codes, dtype=torch.int64), torch.tensor(positives, dtype=torch.int64),
                     torch.tensor(context_codes, dtype=torch.int64).reshape(count, context), torch.tensor(target_codes, dtype=torch.int64))
    expected = brute_force_mask(column_codes, positives, context_codes, target_codes)
    assert mask.dtype == torch.bool and mask.shape == (count, columns)
    assert np.array_equal(mask.numpy(), expected), f"codes {column_codes}, positives {positives}, contexts {context_codes}:\n{mask.numpy()}\n!=\n{expected}"


def test_bank_mask_by_hand_with_a_key_held_three_times() -> None:
    codes = torch.tensor([7, 3, 7, 9, 7, 3])  # key 7 in columns 0, 2, 4; key 3 in columns 1, 5
    mask = bank_mask(codes, torch.tensor([2, 3]), torch.tensor([[3], [7]]), torch.tensor([7, 9]))
    assert mask.tolist() == [
        [True, True, False, False, True, True],  # window 0: positive 2; key 7's other columns and context key 3
        [True, False, True, False, True, False],  # window 1: positive 3 (key 9, held once); context key 7
    ]


def test_a_sampled_bank_on_rank_one_offsets_its_labels_by_rank_zeros_windows() -> None:
    _, _, bank = make_bank_batch(BATCH, COLUMNS, seed=1, sampled=True)
    own, other = HALVES[1], HALVES[0]
    labels, column_codes, gathered, offset = bank_labels_and_codes(rank_bank(bank, own), BATCH // 2, rank_gather(1, [bank.target_codes[other]]))
    assert offset == BATCH // 2
    assert labels.tolist() == list(range(BATCH // 2, BATCH)), "rank 1's positives are its own targets, after rank 0's"
    assert torch.equal(gathered, bank.target_codes)
    assert torch.equal(column_codes, torch.cat([bank.target_codes, bank.codes]))
    assert torch.equal(column_codes[labels], bank.target_codes[own]), "a label points at a column holding another window's target"


def test_a_full_bank_uses_its_positive_columns_on_any_rank() -> None:
    _, _, bank = make_bank_batch(BATCH, COLUMNS, seed=1)
    labels, column_codes, gathered, offset = bank_labels_and_codes(bank, BATCH, local_gather)
    assert torch.equal(labels, bank.positive_columns) and torch.equal(column_codes, bank.codes)
    assert gathered is None and offset == 0


@pytest.mark.parametrize("sampled", [False, True])
def test_two_simulated_ranks_equal_one_process_over_the_doubled_batch(sampled: bool) -> None:
    model = one_tower_model()
    contexts, targets, bank = make_bank_batch(BATCH, COLUMNS, seed=6, sampled=sampled)
    model.zero_grad()
    single = one_tower_bank_step(model, contexts, targets, bank, micro_batch_size=4, temperature=0.05)
    reference = gradients(model)

    losses, summed = [], {name: torch.zeros_like(g) for name, g in reference.items()}
    fewest, masked = [], []
    for rank, (own, other) in enumerate([HALVES, HALVES[::-1]]):
        gather = rank_gather(rank, [bank.target_codes[other], targets[other]])
        model.zero_grad()
        step = one_tower_bank_step(model, contexts[own], targets[own], rank_bank(bank, own), micro_batch_size=4, temperature=0.05, gather=gather)
        losses.append(step.loss)
        fewest.append(step.negatives_per_positive)
        masked.append(step.masked_per_positive)
        for name, g in gradients(model).items():
            summed[name] += g
        assert (step.positives, step.bank_size) == (BATCH // 2, COLUMNS), f"rank {rank}"
    assert sum(losses) / 2 == pytest.approx(single.loss, abs=1e-5), f"rank losses {losses} do not average to the one-process loss {single.loss}"
    assert min(fewest) == single.negatives_per_positive and sum(masked) / 2 == pytest.approx(single.masked_per_positive)
    for name, g in summed.items():
        torch.testing.assert_close(g / 2, reference[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("sampled", [False, True])
def test_the_step_builds_its_mask_and_labels_on_the_codes_device_not_the_default_one(sampled: bool) -> None:
    """With a default device other than the inputs' (here 'meta'; on a GPU run, cuda vs cpu), a mask or label
    tensor made on the default device cannot meet the columns; the step must place them beside the codes."""
    model = one_tower_model()
    contexts, targets, bank = make_bank_batch(8, 40, seed=3, sampled=sampled)
    expected = one_tower_bank_step(model, contexts, targets, bank, micro_batch_size=3)
    with torch.device("meta"):
        step = one_tower_bank_step(model, contexts, targets, bank, micro_batch_size=3)
        mask = bank_mask(bank.codes, torch.arange(8) if sampled else bank.positive_columns, bank.context_codes, bank.target_codes)
    assert step == expected
    assert mask.device == bank.codes.device


def test_mask_summary_is_the_fewest_unmasked_negatives_and_the_mean_masked_count() -> None:
    masks = [torch.tensor([[True, False, False, False, False]]), torch.tensor([[True, True, True, False, False], [False] * 5])]
    assert mask_summary(masks, 5) == (5 - 1 - 3, pytest.approx(4 / 3))
