"""Leakage between training data and the eval set (`lvmcore/plumbing/leakage.py`) against brute force: sets of ids
and keys, and the full cosine matrix. (Named apart from checks/test_leakage.py, which pytester collects in-process.)"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lvmcore.plumbing.leakage import key_leakage, near_duplicate_fraction, near_duplicate_rows, split_by_key

key_lists = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=0, max_size=25)


def as_keys(pairs) -> np.ndarray:
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@given(key_lists, key_lists, key_lists)
def test_key_leakage_matches_sets(context_pairs, truth_pairs, eval_pairs) -> None:
    """Article overlap: the share of the eval side's DISTINCT articles seen in training; chunk-key overlap: the
    share of the eval side's key ROWS seen in training (contexts and truths both count as training)."""
    leak = key_leakage(as_keys(context_pairs), as_keys(truth_pairs), as_keys(eval_pairs))
    trained = set(context_pairs) | set(truth_pairs)
    eval_articles = {a for a, _ in eval_pairs}
    articles = len(eval_articles & {a for a, _ in trained}) / len(eval_articles) if eval_articles else 0.0
    keys = sum(pair in trained for pair in eval_pairs) / len(eval_pairs) if eval_pairs else 0.0
    assert (leak.article_overlap, leak.chunk_key_overlap) == (articles, keys)


def test_key_leakage_reads_context_shaped_keys() -> None:
    contexts = as_keys([(1, 0), (1, 1), (2, 0), (2, 1)]).reshape(2, 2, 2)  # (M, C, 2)
    leak = key_leakage(contexts, as_keys([(1, 2), (2, 2)]), as_keys([(1, 1), (3, 0)]).reshape(1, 2, 2))
    assert (leak.article_overlap, leak.chunk_key_overlap) == (0.5, 0.5)


@settings(deadline=None, max_examples=80)
@given(st.integers(0, 8), st.integers(1, 12), st.integers(0, 1000), st.floats(0.5, 0.99), st.booleans())
def test_near_duplicates_match_the_full_cosine_matrix(count, bank_rows, seed, threshold, marked) -> None:
    """With k the bank's size nothing is cut off: the rows are exactly those with a training row at or above the
    threshold. Vectors are unit rows; some eval rows repeat a bank row, so duplicates at cosine 1 occur."""
    rng = np.random.default_rng(seed)
    bank = rng.normal(size=(bank_rows, 6)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    eval_vectors = rng.normal(size=(count, 6)).astype(np.float32)
    eval_vectors /= np.linalg.norm(eval_vectors, axis=1, keepdims=True)
    copies = rng.random(count) < 0.5
    eval_vectors[copies] = bank[rng.integers(0, bank_rows, size=int(copies.sum()))]
    training = rng.random(bank_rows) < 0.6 if marked else None
    cosines = eval_vectors.astype(np.float64) @ bank.astype(np.float64).T  # (M, N)
    assume(not (np.abs(cosines - threshold) < 1e-4).any())  # float32 search against float64 here: no ties at the threshold
    allowed = np.ones(bank_rows, bool) if training is None else training
    expected = [bool(((cosines[i] >= threshold) & allowed).any()) for i in range(count)]
    # saturated: some row's whole top-k is at or above the threshold yet none of it training (k may be too small)
    full = [bool((cosines[i] >= threshold).all()) and not expected[i] for i in range(count)]
    rows, saturated = near_duplicate_rows(eval_vectors, bank, training, threshold, k=bank_rows)
    assert rows.tolist() == expected and saturated == (training is not None and any(full))
    fraction, _ = near_duplicate_fraction(eval_vectors, bank, training, threshold, k=bank_rows)
    assert fraction == (np.mean(expected) if count else 0.0)


def test_a_full_top_k_of_non_training_rows_is_saturated_and_a_larger_k_finds_the_leak() -> None:
    bank = np.tile(np.eye(3, dtype=np.float32)[:1], (4, 1))  # four copies of the eval vector
    training = np.array([False, False, False, True])  # only the last copy is training
    rows, saturated = near_duplicate_rows(bank[:1], bank, training, k=2)
    if not rows[0]:  # the top 2 held only non-training copies: said, not hidden
        assert saturated
    rows, saturated = near_duplicate_rows(bank[:1], bank, training, k=4)
    assert rows.tolist() == [True] and not saturated


@given(st.lists(st.booleans(), min_size=0, max_size=20), key_lists)
def test_split_by_key_matches_sets(flags, training_pairs) -> None:
    eval_pairs = [(i % 7, i // 7) for i in range(len(flags))]
    found = split_by_key(np.array(flags, dtype=bool), as_keys(eval_pairs), as_keys(training_pairs))
    trained = [pair in set(training_pairs) for pair in eval_pairs]
    assert found.own_key_trained.tolist() == trained
    assert found.same_key == sum(f and t for f, t in zip(flags, trained))
    assert found.other_keys == sum(f and not t for f, t in zip(flags, trained))
    assert found.fraction == (np.mean(flags) if flags else 0.0)


def test_near_duplicates_are_split_by_whether_the_eval_key_was_trained_on() -> None:
    eye = np.eye(4, dtype=np.float32)
    eval_vectors, eval_keys = eye[:3], np.array([[1, 0], [1, 1], [2, 0]])
    bank = np.stack([eye[0], eye[1]])  # eval rows 0 and 1 repeated in training; row 2 not
    rows, saturated = near_duplicate_rows(eval_vectors, bank)
    assert rows.tolist() == [True, True, False] and not saturated
    assert near_duplicate_fraction(eval_vectors, bank)[0] == 2 / 3
    found = split_by_key(rows, eval_keys, training_keys=np.array([[1, 0], [9, 9]]))  # row 0 is itself trained on; row 1 under key (9, 9)
    assert (found.same_key, found.other_keys, found.fraction) == (1, 1, 2 / 3)
    assert split_by_key(rows, eval_keys, np.zeros((0, 2), np.int64)).other_keys == 2


def test_nothing_to_compare_is_no_leak() -> None:
    rows, saturated = near_duplicate_rows(np.zeros((0, 4), np.float32), np.eye(4, dtype=np.float32))
    assert rows.shape == (0,) and not saturated and split_by_key(rows, np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)).fraction == 0.0
