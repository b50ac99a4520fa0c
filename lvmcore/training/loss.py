"""InfoNCE over the EFFECTIVE batch, with the negatives it claims (FAILURE_MODES row 9).

The loss (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding",
arXiv:1807.03748; the in-batch form of Henderson et al. 2017, arXiv:1705.00652, section 4.4):

    L = -1/B * sum_i log( exp(cos(p_i, t_i) / tau) / sum_j exp(cos(p_i, t_j) / tau) )

p_i is the model's prediction for window i, t_i its true next chunk, and j runs over EVERY target
column of the effective batch: all B = batch_size x accumulation x world_size targets, plus k
same-document hard negatives per window when asked for. Each positive therefore sees
`B * (1 + k) - 1` negatives; with 256 x 4 accumulation on one process and no hard negatives
that is 1,023, not the 255 a per-micro-batch loss would give. The count returned in `StepLoss` is
read from the score matrix's real shape, never from the config.

Two ways to spread one effective batch over micro-batches with the same gradient as one big batch:

* One tower (targets are fixed payload vectors): all targets are known up front, so each
  micro-batch scores its predictions against ALL target columns (labels offset by the micro-batch's
  position) and backpropagates its share `len(micro) / B` of the mean. The sum of the micro-batch
  gradients is exactly the big-batch gradient.
* Two towers (targets pass through a trainable payload tower, `model.encode_bank`): gradient
  caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
  Setup", arXiv:2101.06983), the scheme of sentence-transformers'
  `CachedMultipleNegativesRankingLoss`, written here for our (context, next chunk) pairs:
  (1) embed every context and target per micro-batch WITHOUT a graph, remembering each
      micro-batch's RNG state; (2) compute the full-batch loss on those cached embeddings and
      backpropagate it only as far as the embeddings, caching d loss / d embedding; (3) re-embed
      each micro-batch WITH a graph under its replayed RNG state (same dropout masks) and
      backpropagate the cached gradients into the weights.

Across processes a `gather` callable (see `train.ddp`) concatenates every rank's target columns,
so negatives grow with the world size; it must pass gradients back to the owning rank for the
two-tower case. Both step functions call `backward()` themselves and leave gradients on the
model's parameters; the optimizer step, clipping and gradient averaging belong to the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_TEMPERATURE = 0.07

Gather = Callable[[Tensor], tuple[Tensor, int]]  # rows of every rank, and the row offset of this rank's block


def local_gather(rows: Tensor) -> tuple[Tensor, int]:
    """The single-process `Gather`: this process's rows are all the rows, starting at 0."""
    return rows, 0


@dataclass(frozen=True)
class StepLoss:
    """What one optimizer step's loss saw, measured from the tensors it scored."""

    loss: float  # mean InfoNCE over this process's positives
    positives: int  # positives scored by this process in this step
    negatives_per_positive: int  # target columns of the score matrix minus the positive


def info_nce(predictions: Tensor, targets: Tensor, labels: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Mean InfoNCE of predictions (B, D) against target columns (N, D); labels (B,) index the positive.

    Both sides are L2-normalized in float32 (an all-zero row stays zero: no NaN), so the score is
    the cosine over the temperature.
    """
    p = F.normalize(predictions.float(), dim=-1)  # (B, D)
    t = F.normalize(targets.float(), dim=-1)  # (N, D)
    logits = p @ t.T / temperature  # (B, N)
    return F.cross_entropy(logits, labels)


def micro_slices(count: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` rows covering `count` rows."""
    if size < 1:
        raise ValueError(f"micro-batch size must be >= 1, got {size}")
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def target_columns(targets: Tensor, hard_negatives: Tensor | None, gather: Gather) -> tuple[Tensor, int]:
    """Every rank's targets, then every rank's hard negatives: (W*B*(1+k), D) and this rank's label offset."""
    all_targets, offset = gather(targets)  # (W*B, D)
    if hard_negatives is None or hard_negatives.shape[0] == 0:
        return all_targets, offset
    all_negatives, _ = gather(hard_negatives)  # (W*B*k, D)
    return torch.cat([all_targets, all_negatives]), offset


def one_tower_step(
    model: nn.Module,
    contexts: Tensor,
    targets: Tensor,
    *,
    micro_batch_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    hard_negatives: Tensor | None = None,
    gather: Gather = local_gather,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepLoss:
    """Backpropagate InfoNCE of one effective batch, micro-batch by micro-batch; targets are fixed vectors.

    contexts (B, C, D), targets (B, D), hard_negatives (B, k, D) or None. Every micro-batch is
    scored against all W*B*(1+k) target columns, so the gradients left on the model equal those of
    one batch of B (test_loss.py checks this to 1e-5).
    """
    count, dim = targets.shape
    with torch.no_grad():
        negatives = None if hard_negatives is None else hard_negatives.reshape(-1, dim)  # (B*k, D)
        columns, offset = target_columns(targets, negatives, gather)  # (N, D)
    total = 0.0
    for part in micro_slices(count, micro_batch_size):
        with autocast():
            predictions = model(contexts[part])  # (b, D)
        labels = torch.arange(part.start, part.stop, device=columns.device) + offset  # (b,)
        loss = info_nce(predictions, columns, labels, temperature) * ((part.stop - part.start) / count)
        loss.backward()
        total += float(loss.detach())
    return StepLoss(loss=total, positives=count, negatives_per_positive=int(columns.shape[0]) - 1)


class RngSnapshot:
    """The CPU (and CUDA) RNG state at creation; `replay()` reruns code under it, as GradCache's RandContext."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = [self.device] if self.cuda_state is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu_state)
            if self.cuda_state is not None:
                torch.cuda.set_rng_state(self.cuda_state, self.device)
            yield


def replayable(device: torch.device) -> AbstractContextManager:
    """On CUDA, turn cuDNN off so every random number comes from the torch RNG that `RngSnapshot` replays.

    cuDNN's RNN keeps its own dropout state, which advances on every call and ignores the torch
    generator: the re-embedding of step (3) would draw other masks than step (1), and the cached
    gradients would belong to another network. Measured on an H200 with the two-tower preset (GRU
    query tower, dropout 0.1), batch 256 in micro-batches of 64: max gradient error 3.4e-2 with
    cuDNN, 3.6e-7 without.
    The native kernels draw dropout from the torch RNG. CPU runs never use cuDNN.
    """
    return torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else nullcontext()


def embed_without_graph(
    encode: Callable[[Tensor], Tensor], inputs: Tensor, micro_batch_size: int, autocast: Callable[[], AbstractContextManager]
) -> tuple[Tensor, list[tuple[slice, RngSnapshot]]]:
    """GradCache step 1: embeddings (M, D) in float32 with no graph, and each micro-batch's RNG state."""
    parts, replays = [], []
    for part in micro_slices(inputs.shape[0], micro_batch_size):
        snapshot = RngSnapshot(inputs.device)
        with torch.no_grad(), replayable(inputs.device), autocast():
            parts.append(encode(inputs[part]).float())  # (b, D)
        replays.append((part, snapshot))
    return torch.cat(parts), replays


def backprop_cached(
    encode: Callable[[Tensor], Tensor],
    inputs: Tensor,
    cached_grad: Tensor,
    replays: list[tuple[slice, RngSnapshot]],
    autocast: Callable[[], AbstractContextManager],
) -> None:
    """GradCache step 3: re-embed each micro-batch with a graph under its RNG state, backprop the cached grads."""
    for part, snapshot in replays:
        with snapshot.replay(), replayable(inputs.device), autocast():
            embedded = encode(inputs[part]).float()  # (b, D)
        embedded.backward(cached_grad[part])


def two_tower_step(
    model: nn.Module,
    contexts: Tensor,
    targets: Tensor,
    *,
    micro_batch_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    hard_negatives: Tensor | None = None,
    gather: Gather = local_gather,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepLoss:
    """Backpropagate InfoNCE of one effective batch when targets go through `model.encode_bank`, by gradient caching.

    contexts (B, C, D), targets (B, D), hard_negatives (B, k, D) or None; `gather` must pass
    gradients back to the rank that owns each row (train.ddp.all_gather_rows does).
    """
    count, dim = targets.shape
    bank_inputs = targets if hard_negatives is None else torch.cat([targets, hard_negatives.reshape(-1, dim)])  # (B*(1+k), D)
    # (1) embed everything without a graph
    predictions, prediction_replays = embed_without_graph(model, contexts, micro_batch_size, autocast)  # (B, D)
    encoded, bank_replays = embed_without_graph(model.encode_bank, bank_inputs, micro_batch_size, autocast)  # (B*(1+k), D)
    # (2) full-batch loss on the cached embeddings, gradients stop at the embeddings
    predictions.requires_grad_(True)
    encoded.requires_grad_(True)
    negatives = encoded[count:] if hard_negatives is not None else None
    columns, offset = target_columns(encoded[:count], negatives, gather)  # (N, D)
    labels = torch.arange(count, device=columns.device) + offset  # (B,)
    loss = info_nce(predictions, columns, labels, temperature)
    loss.backward()
    assert predictions.grad is not None and encoded.grad is not None
    # (3) re-embed with a graph and push the cached gradients into the weights
    backprop_cached(model, contexts, predictions.grad, prediction_replays, autocast)
    backprop_cached(model.encode_bank, bank_inputs, encoded.grad, bank_replays, autocast)
    return StepLoss(loss=float(loss.detach()), positives=count, negatives_per_positive=int(columns.shape[0]) - 1)


def training_step(model: nn.Module, contexts: Tensor, targets: Tensor, **kwargs) -> StepLoss:
    """`two_tower_step` for a model with a trainable payload tower, `one_tower_step` otherwise."""
    if int(getattr(model, "tower_count", 1)) == 2:
        return two_tower_step(model, contexts, targets, **kwargs)
    return one_tower_step(model, contexts, targets, **kwargs)
