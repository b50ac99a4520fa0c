"""GradCache's three steps (lvmcore/training/grad_cache.py): embeddings without a graph in float32, one RNG
snapshot per micro-batch that replays its dropout masks, the cached gradients pushed into the weights exactly,
and cuDNN turned off on CUDA devices only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest
import torch
from torch import nn

from lvmcore.training.grad_cache import RngSnapshot, backprop_cached, embed_without_graph, replayable
from lvmcore.training.loss_common import micro_slices

DIM = 6

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dropout_tower(seed: int = 0) -> nn.Module:
    """A linear map after dropout (train mode): every call draws new masks from the torch RNG."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Dropout(0.5), nn.Linear(DIM, DIM)).train()


def rows(count: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, DIM, generator=torch.Generator().manual_seed(seed))  # (M, D)


@contextmanager
def counting(entered: list) -> Iterator[None]:
    """An `autocast` stand-in that records each time it is entered."""
    entered.append(1)
    yield


def test_replayable_turns_cudnn_off_on_a_cuda_device_and_leaves_it_alone_elsewhere() -> None:
    """cuDNN's RNN dropout ignores the torch RNG, so the replay needs it off on CUDA; a CPU run keeps the setting.
    torch.device("cuda") is only a name here: no GPU is touched by entering the flags context."""
    before = torch.backends.cudnn.enabled
    assert before, "this test expects torch's default (cuDNN enabled)"
    with replayable(torch.device("cuda")):
        assert torch.backends.cudnn.enabled is False, "cuDNN still on inside replayable(cuda): step 3 would draw other dropout masks"
    assert torch.backends.cudnn.enabled is before
    with replayable(torch.device("cuda", 1)):
        assert torch.backends.cudnn.enabled is False
    with replayable(torch.device("cpu")):
        assert torch.backends.cudnn.enabled is before, "replayable(cpu) changed the cuDNN setting"


def test_a_cpu_snapshot_keeps_its_device_and_no_cuda_state() -> None:
    snapshot = RngSnapshot(torch.device("cpu"))
    assert snapshot.device == torch.device("cpu") and snapshot.cuda_state is None
    assert torch.equal(snapshot.cpu_state, torch.get_rng_state())


@pytest.mark.parametrize("count,micro", [(7, 3), (6, 6), (1, 4)])
def test_embed_without_graph_is_the_float32_embedding_of_each_micro_batch_and_replays_its_masks(count: int, micro: int) -> None:
    tower = dropout_tower()
    inputs = rows(count)
    torch.manual_seed(5)
    entered = []
    embedded, replays = embed_without_graph(lambda x: tower(x).double(), inputs, micro, lambda: counting(entered))
    assert len(entered) == len(micro_slices(count, micro)), "autocast() must wrap every micro-batch's forward"
    assert embedded.dtype == torch.float32 and embedded.shape == (count, DIM)
    assert not embedded.requires_grad and embedded.grad_fn is None, "step 1 kept a graph: the memory GradCache saves is spent"
    assert [part for part, _ in replays] == micro_slices(count, micro)
    torch.manual_seed(5)  # the same stream, one micro-batch after the other: the same masks
    expected = torch.cat([tower(inputs[part]) for part in micro_slices(count, micro)]).detach()  # (M, D)
    torch.testing.assert_close(embedded, expected.float())
    for part, snapshot in replays:
        with snapshot.replay():
            again = tower(inputs[part])  # (b, D)
        torch.testing.assert_close(again.detach().float(), embedded[part], msg=lambda m: f"micro-batch {part}: replayed masks differ: {m}")


@pytest.mark.parametrize("count,micro", [(7, 3), (5, 5)])
def test_backprop_cached_puts_exactly_the_cached_gradient_into_the_weights(count: int, micro: int) -> None:
    """Step 3 re-embeds each micro-batch under its snapshot and backpropagates its slice of the cached gradient:
    the weights' gradient is that of sum(embedding * cached_grad) over one graph with the same masks."""
    tower = dropout_tower(seed=2)
    inputs = rows(count, seed=3)
    cached_grad = rows(count, seed=4)  # (M, D) d loss / d embedding
    torch.manual_seed(9)
    _, replays = embed_without_graph(tower, inputs, micro, nullcontext)
    tower.zero_grad()
    entered = []
    backprop_cached(tower, inputs, cached_grad, replays, lambda: counting(entered))
    assert len(entered) == len(replays)
    cached = {name: p.grad.clone() for name, p in tower.named_parameters()}
    tower.zero_grad()
    torch.manual_seed(9)
    embedded = torch.cat([tower(inputs[part]) for part in micro_slices(count, micro)])  # (M, D), one graph
    (embedded * cached_grad).sum().backward()
    for name, p in tower.named_parameters():
        torch.testing.assert_close(cached[name], p.grad, msg=lambda m: f"{name}: {m}")


def test_a_cuda_snapshot_reads_the_cuda_generator() -> None:
    """The CUDA branch of the snapshot: on a CUDA device it must hold the CUDA generator's state (else dropout
    masks drawn on the GPU are not replayed). With a GPU that state is compared; on a build without CUDA the
    snapshot's request for it is refused, which shows the branch is taken (a snapshot that skipped it would
    construct silently with no CUDA state)."""
    device = torch.device("cuda")
    if torch.cuda.is_available():
        snapshot = RngSnapshot(device)
        assert snapshot.device == device and torch.equal(snapshot.cuda_state, torch.cuda.get_rng_state(device))
    else:
        with pytest.raises((AssertionError, RuntimeError), match="CUDA|cuda"):
            RngSnapshot(device)
