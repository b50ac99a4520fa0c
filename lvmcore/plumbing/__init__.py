"""Plumbing measurements, run before training: vectors against the payload by key (alignment),
train/eval overlap (leakage), what each artifact records about its vectors (provenance) and which
payload it names (identity), keys recovered from the payload by search (key_recovery), and the one
reader of users' files for the suite and the trainer (user_files).

Pure functions of arrays and loaded artifacts; the checks in `checks/test_*` assert on them.
May import the root modules, `lvmcore.artifacts` and `lvmcore.search`.
"""
