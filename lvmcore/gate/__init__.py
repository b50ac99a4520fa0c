"""The gate, run after each epoch: a model's predictions on the held-out eval set, searched once,
measured against context-only baselines and the oracle, turned into one decision and a report.

`evaluate` runs the steps in order (predict -> search once -> measure -> figures) over the types of
`query_sets`, and returns the `evaluation` the checks read (`GateEvaluation`); `routes` and `predict`
turn a model into the `predict_fn` it is given; `fixed_sets` caches the baselines' and the oracle's
half. `metrics`, `baselines`, `health`, `intervals`, `comparison`, `levels` and `decision` are pure
functions of arrays and figures; `inputs` and `record_checks` measure plumbing's figures again at gate
time; `report` renders the typed report data and its text, `run_report` a run's checkpoints side by side.
May import the root modules, `lvmcore.artifacts`, `lvmcore.search`, `lvmcore.plumbing`, `lvmcore.models`
and (for `predict`) torch.
"""
