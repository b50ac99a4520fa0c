"""Benchmarks and seed banks at the public pipeline's scale (run as scripts; see bench/README.md)."""
