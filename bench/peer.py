"""The peer: sentence-transformers' InformationRetrievalEvaluator on precomputed embeddings.

In sentence-transformers 6.x, `InformationRetrievalEvaluator.compute_all_metrics(model,
corpus_embeddings=...)` (alias `compute_metrices`) takes the corpus as a tensor and asks
`model.encode_query(queries, ...)` for the query embeddings. A pass-through "model" whose
`encode_query` returns our query vectors feeds it the same queries and corpus we search, so its
accuracy@k (a hit in the top k) and MRR@k are directly comparable with `lvmcore.search.hits`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class PassThroughModel:
    """Returns precomputed query vectors; queries are their row numbers as strings."""

    def __init__(self, query_vectors: np.ndarray) -> None:
        self.query_vectors = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))  # (Q, D)

    def encode_query(self, queries: list[str], **_: object) -> torch.Tensor:
        return self.query_vectors[torch.tensor([int(q) for q in queries])]  # (Q, D)


@dataclass
class PeerEvaluator:
    """A built evaluator and the inputs it runs on (building it is setup, not the timed part)."""

    evaluator: object
    model: PassThroughModel
    corpus: torch.Tensor  # (N, D), shares memory with the payload array
    ks: tuple[int, ...]


def corpus_id(row: int) -> str:
    """Zero-padded, so the evaluator's string tie-break (ascending corpus id) is row order."""
    return f"{row:010d}"


def build_peer(payload_vectors: np.ndarray, payload_keys: np.ndarray, queries: np.ndarray, truth_keys: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> PeerEvaluator:
    """An InformationRetrievalEvaluator whose relevant docs are every payload row with the truth key."""
    from sentence_transformers import util
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    from lvmcore.keys import KeyIndex, pack_keys

    index = KeyIndex.from_keys(payload_keys)
    truth = pack_keys(truth_keys)
    lo = np.searchsorted(index.sorted_codes, truth, side="left")
    hi = np.searchsorted(index.sorted_codes, truth, side="right")
    relevant = {str(q): {corpus_id(int(r)) for r in index.order[lo[q] : hi[q]]} for q in range(len(truth))}
    corpus = {corpus_id(r): "" for r in range(len(payload_vectors))}  # texts unused: embeddings are given
    evaluator = InformationRetrievalEvaluator(
        queries={str(q): str(q) for q in range(len(queries))},
        corpus=corpus,
        relevant_docs=relevant,
        mrr_at_k=[max(ks)],
        ndcg_at_k=[max(ks)],
        accuracy_at_k=list(ks),
        precision_recall_at_k=[max(ks)],
        map_at_k=[max(ks)],
        score_functions={"dot": util.dot_score},
        write_csv=False,
    )
    corpus_tensor = torch.from_numpy(np.asarray(payload_vectors))  # (N, D), no copy of a memory map's pages
    return PeerEvaluator(evaluator, PassThroughModel(queries), corpus_tensor, tuple(ks))


def run_peer(peer: PeerEvaluator) -> dict[str, float]:
    """R@k (its accuracy@k) and MRR@max(k) as the peer computes them."""
    scores = peer.evaluator.compute_all_metrics(peer.model, corpus_embeddings=peer.corpus)["dot"]
    result = {f"R@{k}": float(scores["accuracy@k"][k]) for k in peer.ks}
    result[f"MRR@{max(peer.ks)}"] = float(scores["mrr@k"][max(peer.ks)])
    return result
