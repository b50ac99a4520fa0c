"""Ingest: documents -> sentence chunks -> all-MiniLM-L6-v2 vectors -> payload, training specs, eval set.

Modules: `chunking` (sentence packing), `corpora` (readers), `encoder` (torch and ONNX backends),
`build` (artifacts); `python -m lvmcore.ingest --help` is the command.
May import the root modules and `lvmcore.artifacts`.
"""
