"""What the project's tests share and are not tests themselves: bank builders, breakers, fault generators,
harnesses. Imported as `helpers.<module>` (tests/ is on sys.path in a test session).

| module | holds |
|---|---|
| `synthetic` | the smooth-walk bank and a healthy bank on disk (`write_healthy_bank`) |
| `broken` | one breaker per plumbing check (`BREAKAGES`, `break_bank`) |
| `faults` | generated malformed bytes, JSON, `.npy` and `.npz` for every loader |
| `decision_cases` | healthy and broken `GateMetrics` for the decision tests |
| `pipeline_layouts` | the public pipeline's file layouts, written from one bank |
| `foreign_model` | another codebase's checkpoint and its `--model-adapter` loader |
| `rank_harness` | the one DDP harness (`free_port`, `spawn_ranks`) |
| `session_caches` | every cache of a test run routed to one temporary folder |
| `training_runs` | the trainer's small synthetic bank, its config and CLI arguments, a finished run |
"""
