"""Near-duplicate leakage (`lvmcore/plumbing/leakage.py`; named apart from checks/test_leakage.py, which pytester collects in-process)."""

from __future__ import annotations

import numpy as np

from lvmcore.plumbing.leakage import near_duplicate_fraction, near_duplicate_rows, split_by_key


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
