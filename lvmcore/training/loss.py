"""InfoNCE over the EFFECTIVE batch or over a bank of payload chunks, with the negatives it claims (FAILURE_MODES row 9).

Two losses: the in-batch InfoNCE (`loss: "in_batch"`, first below) and the bank-negatives
InfoNCE (`loss: "bank"`, `bank_info_nce` and the section "Bank negatives" further down).
`expected_negatives_per_positive(history_config)` says, for either, how many negatives every
positive is guaranteed to see, for a gate check to compare with what training recorded.

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

Bank negatives (`bank_info_nce`, `one_tower_bank_step`, `two_tower_bank_step`): each prediction is
scored against a BANK of payload chunks instead of the batch's targets, with some columns masked:

    L = -1/B * sum_i log( exp(s_i,pos(i)) / sum_{j in bank, j not in M_i} exp(s_ij) ),   s_ij = cos(p_i, b_j) / tau

b_j is bank column j (the payload vector, through `model.encode_bank` for two towers), pos(i) the
column of window i's target row, and M_i the masked columns of window i: every column whose key
is one of window i's C context keys (the chunks the model just read: the bank holds the last of
them at cosine 1 to a copy-last prediction, so unmasked they are the hardest "negatives" and push
the prediction away from the context it should start from), and every column other than pos(i)
that holds the TARGET's key (a duplicated payload row of the next chunk is not a negative).
Masking is by key, the payload row's identity, never by vector equality. A masked column gets
logit -inf: it has no weight in the softmax and receives no gradient. (The prototype measured on
the embedded bank that the unmasked bank hurts, and that adding the context chunks as extra
negatives instead of masking them drops R@5 from 31.4% to 12.4%.)

The bank is either
* the full bank (`bank_negatives` 0): every payload row of the training articles, one exact
  softmax over all K of them (7,285 columns on the embedded bank); or
* a sampled bank (`bank_negatives` S > 0, for banks that do not fit: 584,545 chunks at seed
  scale): the effective batch's own targets (gathered over ranks, so they are positives and
  each other's negatives as in the in-batch loss) followed by S payload rows drawn uniformly
  without replacement per step from the training rows whose key is not a target key of the
  step (`sample_bank_rows`; seeded by (seed, epoch, step), the same on every rank). K = W*B + S.

This is the sampled-softmax / "global negatives" family: Jean et al. 2015 ("On Using Very Large
Target Vocabulary for Neural Machine Translation", arXiv:1412.2007) for a softmax over a
sampled subset of a large output vocabulary, Xiong et al. 2021 (ANCE, arXiv:2007.00808) and
Izacard et al. 2022 (Contriever, arXiv:2112.09118: a bank of negatives beyond the batch) for
retrieval; the masking of known false negatives follows Chen et al. 2022 ("Incremental False
Negative Detection for Contrastive Learning", arXiv:2106.03719) and the duplicate-aware hits of
this project.

Negatives per positive: window i sees K - 1 - |M_i| negatives. With unique payload keys |M_i| <= C,
so every positive sees at least K - 1 - C: 7,285 - 6 = 7,279 over the full embedded bank (the
7,285 chunks of its training articles; history.json records exactly that), and W*B + S - 1 - C
with the sampled bank (1,024 + 16,384 - 6 = 17,402 for 256 x 4 and S = 16,384).
`StepLoss.negatives_per_positive` is the minimum over the step's positives, read from the mask
itself, `masked_per_positive` the mean |M_i|, `bank_size` K; `expected_negatives_per_positive`
gives the guaranteed floor from a run's config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_TEMPERATURE = 0.07

Gather = Callable[[Tensor], tuple[Tensor, int]]  # rows of every rank, and the row offset of this rank's block


def local_gather(rows: Tensor) -> tuple[Tensor, int]:
    """The single-process `Gather`: this process's rows are all the rows, starting at 0."""
    return rows, 0


LOSSES = ("in_batch", "bank")


@dataclass(frozen=True)
class StepLoss:
    """What one optimizer step's loss saw, measured from the tensors it scored."""

    loss: float  # mean InfoNCE over this process's positives
    positives: int  # positives scored by this process in this step
    negatives_per_positive: int  # the fewest unmasked columns other than its positive that any positive saw
    bank_size: int = 0  # columns each positive was scored against (masked ones included)
    masked_per_positive: float = 0.0  # mean masked columns per positive (0 for the in-batch loss)


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
    return StepLoss(loss=total, positives=count, negatives_per_positive=int(columns.shape[0]) - 1, bank_size=int(columns.shape[0]))


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
    return StepLoss(
        loss=float(loss.detach()), positives=count, negatives_per_positive=int(columns.shape[0]) - 1, bank_size=int(columns.shape[0])
    )


# ---------------------------------------------------------------------------------- bank negatives


@dataclass(frozen=True)
class BankBatch:
    """One step's bank and what the mask needs about this process's windows.

    vectors (K_b, D): the bank's payload vectors, raw (a two-tower model encodes them); codes (K_b,)
    int64: their packed keys (`lvmcore.keys.pack_keys`). context_codes (B, C) and target_codes (B,):
    the keys of each window's context chunks and target. positive_columns (B,): the column of each
    window's target row in `vectors` (full bank), or None: the sampled bank, whose columns are the
    gathered batch targets followed by `vectors`, window i's positive being its own target.
    """

    vectors: Tensor  # (K_b, D)
    codes: Tensor  # (K_b,) int64
    context_codes: Tensor  # (B, C) int64
    target_codes: Tensor  # (B,) int64
    positive_columns: Tensor | None = None  # (B,) int64, full bank only

    @property
    def sampled(self) -> bool:
        return self.positive_columns is None


def bank_mask(column_codes: Tensor, positive_columns: Tensor, context_codes: Tensor, target_codes: Tensor) -> Tensor:
    """(B, K) bool, True where window i must not score column j: j holds one of i's context keys,
    or j holds i's target key and is not i's positive. The positive itself is never masked.

    column_codes (K,), positive_columns (B,), context_codes (B, C), target_codes (B,), all int64.
    Sorted search, not a (B, K, C) comparison, so it costs O((K + B C m) log K) for a key held by
    at most m columns, whatever the bank size.
    """
    count, columns = positive_columns.shape[0], column_codes.shape[0]
    order = torch.argsort(column_codes)  # (K,)
    sorted_codes = column_codes[order]  # (K,)
    queries = torch.cat([context_codes, target_codes[:, None]], dim=1)  # (B, C+1)
    low = torch.searchsorted(sorted_codes, queries)  # (B, C+1) first column with the key
    high = torch.searchsorted(sorted_codes, queries, right=True)  # (B, C+1) one past the last
    mask = torch.zeros(count, columns, dtype=torch.bool, device=column_codes.device)  # (B, K)
    windows = torch.arange(count, device=column_codes.device)[:, None].expand_as(low)  # (B, C+1)
    for offset in range(int((high - low).max()) if queries.numel() else 0):  # m passes; m = 1 for unique keys
        present = low + offset < high  # (B, C+1)
        hit_columns = order[(low + offset).clamp(max=columns - 1)]  # (B, C+1)
        mask[windows[present], hit_columns[present]] = True
    mask[torch.arange(count, device=mask.device), positive_columns] = False
    return mask


def bank_info_nce(
    predictions: Tensor, columns: Tensor, labels: Tensor, mask: Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> Tensor:
    """Mean masked InfoNCE of predictions (B, D) against bank columns (K, D); labels (B,) index the positive.

    mask (B, K) bool: True columns are set to -inf before the softmax, so they neither count in
    the denominator nor receive a gradient. Cosine over the temperature, in float32.
    """
    p = F.normalize(predictions.float(), dim=-1)  # (B, D)
    t = F.normalize(columns.float(), dim=-1)  # (K, D)
    logits = (p @ t.T / temperature).masked_fill(mask, float("-inf"))  # (B, K)
    return F.cross_entropy(logits, labels)


def bank_labels_and_codes(bank: BankBatch, count: int, gather: Gather) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """The positive column of each of this process's windows, every column's code, and (sampled bank)
    the gathered target codes and this process's offset among them."""
    if not bank.sampled:
        assert bank.positive_columns is not None
        return bank.positive_columns, bank.codes, None, 0
    all_target_codes, offset = gather(bank.target_codes)  # (W*B,)
    labels = torch.arange(count, device=bank.codes.device) + offset  # (B,)
    return labels, torch.cat([all_target_codes, bank.codes]), all_target_codes, offset


def mask_summary(masks: list[Tensor], columns: int) -> tuple[int, float]:
    """(fewest unmasked negatives of any positive, mean masked columns) over the micro-batches' masks."""
    masked = torch.cat([m.sum(dim=1) for m in masks])  # (B,)
    return int(columns - 1 - int(masked.max())), float(masked.float().mean())


def one_tower_bank_step(
    model: nn.Module,
    contexts: Tensor,
    targets: Tensor,
    bank: BankBatch,
    *,
    micro_batch_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    gather: Gather = local_gather,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepLoss:
    """Backpropagate the masked bank InfoNCE of one effective batch, micro-batch by micro-batch.

    contexts (B, C, D), targets (B, D) (columns of the sampled bank; unused by the full bank, whose
    positives are bank rows). Every micro-batch scores its predictions against all K columns and
    backpropagates its share of the mean, so the gradient equals one batch of B.
    """
    count = contexts.shape[0]
    labels, column_codes, _, _ = bank_labels_and_codes(bank, count, gather)
    with torch.no_grad():
        columns = torch.cat([gather(targets)[0], bank.vectors]) if bank.sampled else bank.vectors  # (K, D)
    total, masks = 0.0, []
    for part in micro_slices(count, micro_batch_size):
        mask = bank_mask(column_codes, labels[part], bank.context_codes[part], bank.target_codes[part])  # (b, K)
        with autocast():
            predictions = model(contexts[part])  # (b, D)
        loss = bank_info_nce(predictions, columns, labels[part], mask, temperature) * ((part.stop - part.start) / count)
        loss.backward()
        total += float(loss.detach())
        masks.append(mask)
    fewest, masked = mask_summary(masks, int(columns.shape[0]))
    return StepLoss(loss=total, positives=count, negatives_per_positive=fewest, bank_size=int(columns.shape[0]), masked_per_positive=masked)


def two_tower_bank_step(
    model: nn.Module,
    contexts: Tensor,
    targets: Tensor,
    bank: BankBatch,
    *,
    micro_batch_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    gather: Gather = local_gather,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepLoss:
    """The masked bank InfoNCE when columns go through `model.encode_bank`, by gradient caching.

    The same three steps as `two_tower_step`, with the bank's K columns as the encoded side:
    (1) predictions and encoded columns without a graph, (2) the loss in blocks of
    `micro_batch_size` rows on the cached embeddings, gradients stopping there, (3) re-embedding
    with a graph under the replayed RNG states and backpropagating the cached gradients.
    """
    count = contexts.shape[0]
    labels, column_codes, _, _ = bank_labels_and_codes(bank, count, gather)
    bank_inputs = torch.cat([targets, bank.vectors]) if bank.sampled else bank.vectors  # (B + K_b, D) or (K_b, D)
    predictions, prediction_replays = embed_without_graph(model, contexts, micro_batch_size, autocast)  # (B, D)
    encoded, bank_replays = embed_without_graph(model.encode_bank, bank_inputs, micro_batch_size, autocast)  # (., D)
    predictions.requires_grad_(True)
    encoded.requires_grad_(True)
    if bank.sampled:
        gathered, _ = gather(encoded[:count])  # (W*B, D), gradient-correct across ranks
        columns = torch.cat([gathered, encoded[count:]])  # (K, D)
    else:
        columns = encoded  # (K, D)
    total, masks = 0.0, []
    for part in micro_slices(count, micro_batch_size):
        mask = bank_mask(column_codes, labels[part], bank.context_codes[part], bank.target_codes[part])  # (b, K)
        loss = bank_info_nce(predictions[part], columns, labels[part], mask, temperature) * ((part.stop - part.start) / count)
        loss.backward(retain_graph=True)  # the graph through the gather and the concatenation is shared by every block
        total += float(loss.detach())
        masks.append(mask)
    assert predictions.grad is not None and encoded.grad is not None
    backprop_cached(model, contexts, predictions.grad, prediction_replays, autocast)
    backprop_cached(model.encode_bank, bank_inputs, encoded.grad, bank_replays, autocast)
    fewest, masked = mask_summary(masks, int(columns.shape[0]))
    return StepLoss(loss=total, positives=count, negatives_per_positive=fewest, bank_size=int(columns.shape[0]), masked_per_positive=masked)


def sample_bank_rows(bank_codes: np.ndarray, excluded_codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (S,) into the bank, sorted, drawn uniformly without replacement among the columns whose
    key is not in `excluded_codes` (the step's target keys, already columns of the sampled bank).

    S = min(size, eligible columns). A pure function of its arguments: the same generator state
    gives the same sample, so a seeded run draws the same banks again (and every rank the same).
    """
    eligible = np.flatnonzero(~np.isin(bank_codes, excluded_codes))  # (K_e,)
    if size >= len(eligible):
        return eligible
    return np.sort(eligible[rng.choice(len(eligible), size=size, replace=False)])


def training_step(model: nn.Module, contexts: Tensor, targets: Tensor, *, bank: BankBatch | None = None, **kwargs) -> StepLoss:
    """The loss step for this model and loss: with a `bank`, the bank InfoNCE, else in-batch InfoNCE;
    gradient caching for a model with a trainable payload tower, plain micro-batching otherwise."""
    two_towers = int(getattr(model, "tower_count", 1)) == 2
    if bank is not None:
        if kwargs.pop("hard_negatives", None) is not None:
            raise ValueError("hard negatives are for the in-batch loss: the bank already holds every same-article chunk")
        step = two_tower_bank_step if two_towers else one_tower_bank_step
        return step(model, contexts, targets, bank, **kwargs)
    if two_towers:
        return two_tower_step(model, contexts, targets, **kwargs)
    return one_tower_step(model, contexts, targets, **kwargs)


def expected_negatives_per_positive(config: Mapping[str, Any]) -> int:
    """The negatives EVERY positive is guaranteed to see under a run's history config (history.json's "config").

    in_batch (also when "loss" is absent, as in runs before the bank loss existed):
        batch_size * accumulation * world_size * (1 + hard_negatives) - 1
        (every target and hard negative of the effective batch over all ranks, but its own target;
        1,023 for 256 x 4 on one process without hard negatives).
    bank:
        bank_size - 1 - max_masked,   max_masked = context_length * m + (m - 1)
        bank_size: the columns scored per positive (the training rows of the full bank; the
        gathered effective batch plus bank_negatives sampled rows for the sampled bank);
        m = bank_key_multiplicity: the most columns one key can hold in a step (1 when payload
        keys are unique, as the plumbing check requires). A window masks at most m columns per
        context key and m - 1 duplicates of its target; with unique keys that is bank_size - 1 - C.
        The full bank reaches this bound (every context chunk of a training window is a training
        row); the sampled bank holds a context chunk only when it was drawn or is another
        window's target, so its recorded minimum is usually above it.
    """
    loss = str(config.get("loss", "in_batch"))
    if loss == "in_batch":
        effective = int(config["batch_size"]) * int(config.get("accumulation", 1)) * int(config.get("world_size", 1))
        return effective * (1 + int(config.get("hard_negatives", 0) or 0)) - 1
    if loss == "bank":
        multiplicity = int(config.get("bank_key_multiplicity", 1))
        max_masked = int(config["context_length"]) * multiplicity + multiplicity - 1
        return int(config["bank_size"]) - 1 - max_masked
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
