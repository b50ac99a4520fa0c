"""Our selective scan equals the maths of mamba_ssm's `selective_scan_ref`, values and gradients.

The reference below is a direct transcription of `selective_scan_ref` (state-spaces/mamba,
mamba_ssm/ops/selective_scan_interface.py) for real A and input-dependent B, C: float64, a loop
over time. Our CPU path is an autograd Function with a hand-written backward, so the gradients
are compared too.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.models import scan as scan_module
from lvmcore.models.scan import scan_reference, selective_scan


def transcribed_selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """selective_scan_ref's maths: u, delta, z (B, D, L); A (D, N); B, C (B, N, L); out (B, D, L)."""
    u, delta = u.double(), delta.double()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].double()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A.double()))  # (B, D, L, N)
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B.double(), u)  # (B, D, L, N)
    x = u.new_zeros((batch, dim, dstate))  # (B, D, N)
    ys = []
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i].double()))
    out = torch.stack(ys, dim=2)  # (B, D, L)
    if D is not None:
        out = out + u * D.double()[:, None]
    if z is not None:
        out = out * F.silu(z.double())
    return out


def random_scan_inputs(seed, batch, dim, dstate, length, with_D, with_z, with_bias, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    inputs = {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length) * 0.5,
        "A": -torch.exp(r(dim, dstate) * 0.5),  # A < 0, as -exp(A_log)
        "B": r(batch, dstate, length),
        "C": r(batch, dstate, length),
        "D": r(dim) if with_D else None,
        "z": r(batch, dim, length) if with_z else None,
        "delta_bias": r(dim) * 0.5 if with_bias else None,
    }
    return {k: (v.requires_grad_() if v is not None else None) for k, v in inputs.items()}


def value_and_grads(fn, inputs, softplus):
    for v in inputs.values():
        if v is not None:
            v.grad = None
    out = fn(**inputs, delta_softplus=softplus)
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view_as(out)  # a non-uniform dL/dout
    (out * weights).sum().backward()
    return out.detach(), {k: v.grad.clone() for k, v in inputs.items() if v is not None}


def assert_same(ours, reference, tol, what):
    out, grads = ours
    ref_out, ref_grads = reference
    err = (out.double() - ref_out).abs().max().item()
    assert err <= tol * (1 + ref_out.abs().max().item()), f"{what}: output differs by {err:.3g} > tol {tol}"
    for name, ref_grad in ref_grads.items():
        err = (grads[name].double() - ref_grad).abs().max().item()
        scale = 1 + ref_grad.abs().max().item()
        assert err <= tol * scale, f"{what}: d/d{name} differs by {err:.3g} (scale {scale:.3g}) > tol {tol}"


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 11),
    dim=st.integers(1, 6),
    dstate=st.integers(1, 5),
    length=st.integers(1, 7),
    with_D=st.booleans(),
    with_z=st.booleans(),
    with_bias=st.booleans(),
    softplus=st.booleans(),
    rows_per_block=st.integers(1, 4),
)
def test_cpu_scan_matches_transcribed_reference_float64(
    seed, batch, dim, dstate, length, with_D, with_z, with_bias, softplus, rows_per_block
):
    inputs = random_scan_inputs(seed, batch, dim, dstate, length, with_D, with_z, with_bias)
    if not softplus:  # delta must stay positive for a decaying state, as softplus would make it
        inputs["delta"] = inputs["delta"].detach().abs().requires_grad_()
    reference = value_and_grads(transcribed_selective_scan_ref, inputs, softplus)
    budget = scan_module.STATE_ELEMENTS_PER_BLOCK
    scan_module.STATE_ELEMENTS_PER_BLOCK = rows_per_block * dim * dstate  # partial last blocks too
    try:
        ours = value_and_grads(selective_scan, inputs, softplus)
    finally:
        scan_module.STATE_ELEMENTS_PER_BLOCK = budget
    assert_same(ours, reference, 1e-10, f"selective_scan, {rows_per_block} rows per block")
    assert_same(value_and_grads(scan_reference, inputs, softplus), reference, 1e-10, "scan_reference")


@pytest.mark.parametrize("rows_per_block", [1, 3, 64])
def test_cpu_scan_blocking_does_not_change_the_result(monkeypatch, rows_per_block):
    inputs = random_scan_inputs(7, 10, 5, 4, 5, True, True, True)  # 10 rows of D x N = 5 x 4
    reference = value_and_grads(transcribed_selective_scan_ref, inputs, True)
    monkeypatch.setattr(scan_module, "STATE_ELEMENTS_PER_BLOCK", rows_per_block * 5 * 4)
    assert_same(value_and_grads(selective_scan, inputs, True), reference, 1e-10, f"rows_per_block={rows_per_block}")


def test_cpu_scan_gradcheck():
    inputs = random_scan_inputs(3, 3, 4, 3, 5, True, True, True)
    names = list(inputs)
    fn = lambda *args: selective_scan(**dict(zip(names, args)), delta_softplus=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(inputs[k] for k in names), eps=1e-6, atol=1e-7)


def test_cpu_scan_float32_at_model_size_is_close_to_float64():
    """fp32 at the Mamba-S shape (C = 5, N = 128), a few channels: within 1e-4 of the float64 maths."""
    inputs64 = random_scan_inputs(11, 3, 32, 128, 5, True, True, True)
    inputs32 = {k: (v.detach().float().requires_grad_() if v is not None else None) for k, v in inputs64.items()}
    reference = value_and_grads(transcribed_selective_scan_ref, inputs64, True)
    assert_same(value_and_grads(selective_scan, inputs32, True), reference, 1e-4, "fp32 selective_scan")


def test_cpu_scan_under_bf16_autocast_runs_in_fp32():
    inputs = random_scan_inputs(5, 2, 8, 4, 5, True, True, True, dtype=torch.float32)
    plain = selective_scan(**inputs, delta_softplus=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = selective_scan(**inputs, delta_softplus=True)
    assert autocast.dtype == torch.float32
    assert torch.equal(plain, autocast), "autocast must not lower the scan's precision"


def test_against_mamba_ssm_selective_scan_ref():
    interface = pytest.importorskip(
        "mamba_ssm.ops.selective_scan_interface", reason="mamba_ssm is not installed (optional)"
    )
    inputs = random_scan_inputs(13, 4, 6, 5, 5, True, True, True)
    theirs = value_and_grads(interface.selective_scan_ref, inputs, True)
    assert_same(value_and_grads(selective_scan, inputs, True), theirs, 1e-10, "vs mamba_ssm selective_scan_ref")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_selective_scan_fn_matches_cpu_path():
    interface = pytest.importorskip(
        "mamba_ssm.ops.selective_scan_interface", reason="mamba_ssm is not installed (optional)"
    )
    inputs = random_scan_inputs(17, 4, 64, 16, 5, True, True, True, dtype=torch.float32)
    cpu = value_and_grads(selective_scan, inputs, True)
    cuda_inputs = {k: (v.detach().cuda().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    out, grads = value_and_grads(interface.selective_scan_fn, cuda_inputs, True)
    assert_same((out.cpu(), {k: g.cpu() for k, g in grads.items()}), (cpu[0].double(), {k: g.double() for k, g in cpu[1].items()}), 1e-3, "CUDA selective_scan_fn")
