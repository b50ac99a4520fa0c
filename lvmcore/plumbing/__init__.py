"""Plumbing measurements, run before training: vectors against the payload by key (alignment),
train/eval overlap (leakage), and what each artifact records about its vectors (provenance).

Pure functions of arrays and loaded artifacts; the checks in `checks/test_*` assert on them.
May import the root modules, `lvmcore.artifacts` and `lvmcore.search`.
"""
