"""Artifacts: the files a pipeline writes, read (and written) with every problem one `ArtifactError` line.

The payload bank, eval windows, training data (stored windows or a windows spec), the importers
for public layouts, the array validation every loader shares, checkpoints and the training history.
Nothing here searches or judges: loaders return typed objects that `search`, `plumbing` and `gate`
measure. May import the root modules (`errors`, `blocks`, `keys`, `vectors`, `sampling`) and, for
rebuilding a checkpoint's model, `lvmcore.models`.
"""
