"""The gate, run after each epoch: a model's predictions on the held-out eval set, searched once,
measured against context-only baselines and the oracle, turned into one decision and a report.

`evaluate` runs the steps in order (predict -> search once -> metrics -> report data); `metrics`,
`baselines` and `decision` are pure functions of arrays; `report` renders typed report data.
May import the root modules, `lvmcore.artifacts`, `lvmcore.search` and (for `predict`) torch.
"""
