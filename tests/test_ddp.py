"""Two CPU processes (gloo) with half a batch each give the gradients and loss of one process with the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from lvmcore.training.loss import training_step
from lvmcore.models import PRESETS, build_model
from helpers.rank_harness import spawn_ranks
from train.ddp import all_gather_rows, average_gradients, mean_over_ranks

DIM, CONTEXT, BATCH, MICRO, WORLD = 16, 5, 32, 8, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_inputs(hard: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(7)
    contexts = torch.nn.functional.normalize(torch.randn(BATCH, CONTEXT, DIM, generator=generator), dim=-1)  # (B, C, D)
    targets = torch.nn.functional.normalize(torch.randn(BATCH, DIM, generator=generator), dim=-1)  # (B, D)
    negatives = torch.nn.functional.normalize(torch.randn(BATCH, hard, DIM, generator=generator), dim=-1) if hard else None
    return contexts, targets, negatives


def make_model(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(PRESETS[preset](dim=DIM)).eval()  # eval: no dropout, so ranks and the reference agree


CASES = [("mamba-xs", 0), ("mamba-xs", 1), ("two-tower", 0), ("two-tower", 1)]


def worker(rank: int, port: int, out: str) -> None:
    """One rank: every case on half the batch; rank 0 saves the averaged gradients (one spawn for all cases)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for preset, hard in CASES:
            model = make_model(preset)
            contexts, targets, negatives = make_inputs(hard)
            share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
            step = training_step(
                model,
                contexts[share],
                targets[share],
                micro_batch_size=MICRO,
                hard_negatives=None if negatives is None else negatives[share],
                gather=all_gather_rows,
            )
            average_gradients(model)
            loss = mean_over_ranks(step.loss, torch.device("cpu"))
            grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
            results[f"{preset}/{hard}"] = {"grads": grads, "loss": loss, "negatives": step.negatives_per_positive}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> dict:
    return spawn_ranks(worker, WORLD, tmp_path_factory.mktemp("ddp") / "rank0.pt")


@pytest.mark.parametrize("preset,hard", CASES)
def test_two_ranks_match_one_process_with_the_doubled_batch(preset: str, hard: int, two_rank_results: dict) -> None:
    distributed = two_rank_results[f"{preset}/{hard}"]

    model = make_model(preset)
    contexts, targets, negatives = make_inputs(hard)
    single = training_step(model, contexts, targets, micro_batch_size=MICRO, hard_negatives=negatives)

    assert distributed["negatives"] == single.negatives_per_positive == BATCH * (1 + hard) - 1
    assert distributed["loss"] == pytest.approx(single.loss, abs=1e-5)
    reference = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert distributed["grads"].keys() == reference.keys()
    for name, grad in reference.items():
        torch.testing.assert_close(distributed["grads"][name], grad, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_gather_without_a_process_group_is_the_identity() -> None:
    rows = torch.randn(3, 4)
    gathered, offset = all_gather_rows(rows)
    assert gathered is rows and offset == 0
