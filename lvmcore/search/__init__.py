"""Search over the payload: exact top-k streamed over the memory map, IVF-Flat (built, cached, read),
IVF/exact agreement by row (`agreement`), sharded search under torchrun, and deciding hits by key
(`hits`: first-hit ranks, R@K, MRR, the recall curve).

Search settings (k, nprobe) are arguments of each search, never state written onto a shared index.
May import the root modules and `lvmcore.artifacts` (the `Payload` type).
"""
