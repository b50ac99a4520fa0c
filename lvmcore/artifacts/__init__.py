"""Artifacts: the files a pipeline writes, read (and written) with every problem one `ArtifactError` line.

The payload bank, eval windows, training data (stored windows or a windows spec), the readers of
other pipelines' layouts (detected in `layouts`, read by `layout_payload` and `layout_rows`, pickles
only through `safe_pickle`), the converters (`importers`), the validation every loader shares,
checkpoints (the training layout's one writer, `TrainingCheckpoint`, beside its readers), the training
history, predictions files, and which files of a run folder are gated (`run_folder`).
Nothing here searches or judges: loaders return typed objects that `search`, `plumbing` and `gate`
measure. May import the root modules (`errors`, `blocks`, `keys`, `vectors`, `sampling`) and, for
rebuilding a checkpoint's model, `lvmcore.models`.
"""
