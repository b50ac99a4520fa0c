"""The selective scan of Mamba (Gu & Dao 2023, Alg. 2): a pure-PyTorch CPU path and the CUDA fast path.

Maths, per batch row b, channel d, state n (shapes as in `mamba_ssm`):

    delta_t = softplus(delta_t + delta_bias)                          # (B, D, L) when delta_softplus
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t         # (B, D, N), h_{-1} = 0
    y_t     = sum_n C_t * h_t + D * u_t                                # (B, D)
    out     = y * silu(z)                                              # when z is given

`selective_scan` takes the arguments of `mamba_ssm`'s `selective_scan_fn` in the same layout
(u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L)) and returns (B, D, L) in u's dtype.

Two paths, side by side:

- CUDA tensors and `mamba_ssm` importable: `mamba_ssm.ops.selective_scan_interface.selective_scan_fn`.
- Otherwise `_SelectiveScanCPU`, an autograd Function written for short sequences (C = 5): it runs
  the recurrence over time but in blocks of a few batch rows, so the (rows, D, N) state stays in
  cache instead of streaming a (B, L, D, N) tensor through memory; it saves no state for backward
  and recomputes it there, like the CUDA kernel. `scan_reference` is the plain sequential loop
  autograd differentiates, kept as the readable definition the tests compare against.

Measured on this repo's 2-core AVX2 CPU, one thread, fwd+bwd at B=32, L=5, E=1536, N=128, fp32
(`python bench/bench_train_throughput.py --scan-only --batch 32 --steps 3 --threads 1`):
this Function 0.60 s, the autograd loop (`scan_reference`) 1.81 s, mambapy's `pscan` form 8.07 s.
A parallel scan does not pay at L = 5: it pads L to 8 and streams several (B, 8, E, N) tensors
through memory, while the loop here touches one cache-sized block at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # the official kernel is an optional fast path, never required
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan_fn
except Exception:  # ImportError, or a broken CUDA build
    _cuda_selective_scan_fn = None

# State elements (rows x D x N) scanned together on CPU. Tuned at Mamba-S's E = 1536, N = 128,
# where it is one batch row: that row's states and decays for backward, (2, L, 1536, 128) fp32,
# are 7.5 MiB and stay in L3. Measured fwd+bwd at B=32, L=5, one thread: 1 row 0.51 s, 2 rows
# 0.70 s, 4 rows 0.74 s, 8 rows 0.89 s. Small models (mamba-xs: 256 x 16) get many rows per
# block, or Python overhead per op would dominate.
STATE_ELEMENTS_PER_BLOCK = 1536 * 128


def _rows_per_block(delta: Tensor, d_state: int) -> int:
    """CPU: rows whose state fits the budget above. GPU (no mamba_ssm): all rows, fewer launches."""
    batch, dim = delta.shape[1], delta.shape[2]
    if delta.is_cuda:
        return batch
    return max(1, min(batch, STATE_ELEMENTS_PER_BLOCK // (dim * d_state)))


def cuda_scan_available() -> bool:
    """True when `mamba_ssm`'s CUDA selective scan imported."""
    return _cuda_selective_scan_fn is not None


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    use_cuda_kernel: bool = True,
) -> Tensor:
    """Selective scan with `selective_scan_fn`'s signature; dispatches to CUDA or the CPU path."""
    if use_cuda_kernel and _cuda_selective_scan_fn is not None and u.is_cuda:
        return _cuda_selective_scan_fn(
            u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus
        )
    dtype_in = u.dtype
    f = torch.promote_types(dtype_in, torch.float32)  # the scan runs in fp32 (fp64 stays fp64)
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, delta = u.to(f), delta.to(f)  # (B, D, L)
        if delta_bias is not None:
            delta = delta + delta_bias.to(f)[:, None]
        if delta_softplus:
            delta = F.softplus(delta)
        # time-major, contiguous per step: (L, B, D) and (L, B, N)
        delta_t = delta.permute(2, 0, 1).contiguous()  # (L, B, D)
        u_t = u.permute(2, 0, 1)  # (L, B, D)
        B_t = B.to(f).permute(2, 0, 1).contiguous()  # (L, B, N)
        C_t = C.to(f).permute(2, 0, 1).contiguous()  # (L, B, N)
        y = _SelectiveScanCPU.apply(delta_t, delta_t * u_t, A.to(f), B_t, C_t)  # (L, B, D)
        if D is not None:
            y = y + u_t * D.to(f)  # (L, B, D)
        if z is not None:
            y = y * F.silu(z.to(f).permute(2, 0, 1))  # (L, B, D)
        return y.permute(1, 2, 0).to(dtype_in)  # (B, D, L)


def _states_of_block(
    delta: Tensor, w: Tensor, A: Tensor, B: Tensor, states: Tensor, decays: Tensor
) -> None:
    """Fill states[t] = h_t and decays[t] = exp(delta_t A) for one block of rows, in place.

    delta, w (L, b, D); B (L, b, N); states, decays (L, b, D, N). Buffers are preallocated by the
    caller: a fresh (b, D, N) tensor per op is an mmap and page faults, which cost more than the op.
    """
    torch.mul(w[0].unsqueeze(-1), B[0].unsqueeze(1), out=states[0])  # h_0, since h_{-1} = 0
    for t in range(1, delta.shape[0]):
        torch.mul(delta[t].unsqueeze(-1), A, out=decays[t]).exp_()  # (b, D, N) = exp(delta_t A)
        torch.mul(states[t - 1], decays[t], out=states[t])  # (b, D, N)
        states[t].addcmul_(w[t].unsqueeze(-1), B[t].unsqueeze(1))  # += w_t B_t


class _SelectiveScanCPU(torch.autograd.Function):
    """y_t = C_t . h_t with h_t = exp(delta_t A) h_{t-1} + w_t B_t, where w = delta * u.

    Inputs are time-major: delta, w (L, B, D); A (D, N); B, C (L, B, N). Returns y (L, B, D).
    Backward is the adjoint recurrence, run backwards in time on recomputed states:
        g_t = dy_t C_t + exp(delta_{t+1} A) g_{t+1}                     # dL/dh_t, (b, D, N)
        dC_t = sum_d dy_t h_t;  dw_t = sum_n g_t B_t;  dB_t = sum_d g_t w_t
        G_t = g_t h_{t-1} exp(delta_t A);  d delta_t += sum_n G_t A;  dA += sum_b G_t delta_t
    """

    @staticmethod
    def forward(ctx, delta: Tensor, w: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        length, batch, dim = delta.shape
        y = delta.new_empty(length, batch, dim)  # (L, B, D)
        rows_max = _rows_per_block(delta, A.shape[1])
        h_buf = delta.new_empty(rows_max, dim, A.shape[1])  # (b, D, N)
        decay_buf = torch.empty_like(h_buf)  # (b, D, N)
        with torch.no_grad():
            for r0 in range(0, batch, rows_max):
                rows = slice(r0, r0 + rows_max)
                n_rows = len(range(batch)[rows])
                h, decay = h_buf[:n_rows], decay_buf[:n_rows]  # (b, D, N)
                torch.mul(w[0, rows].unsqueeze(-1), B[0, rows].unsqueeze(1), out=h)  # h_{-1} = 0
                for t in range(length):
                    if t > 0:
                        torch.mul(delta[t, rows].unsqueeze(-1), A, out=decay).exp_()  # (b, D, N)
                        h.mul_(decay).addcmul_(w[t, rows].unsqueeze(-1), B[t, rows].unsqueeze(1))
                    torch.bmm(h, C[t, rows].unsqueeze(-1), out=y[t, rows].unsqueeze(-1))  # (b, D, 1)
        ctx.save_for_backward(delta, w, A, B, C)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        delta, w, A, B, C = ctx.saved_tensors
        length, batch, dim = delta.shape
        dy = dy.contiguous()  # (L, B, D)
        d_delta = torch.zeros_like(delta)  # (L, B, D)
        d_w = torch.empty_like(w)  # (L, B, D)
        d_B = torch.empty_like(B)  # (L, B, N)
        d_C = torch.empty_like(C)  # (L, B, N)
        d_A = torch.zeros_like(A)  # (D, N)
        rows_max = _rows_per_block(delta, A.shape[1])
        states_buf = delta.new_empty(length, rows_max, dim, A.shape[1])  # (L, b, D, N)
        decays_buf = torch.empty_like(states_buf)  # (L, b, D, N)
        g_buf = delta.new_empty(rows_max, dim, A.shape[1])  # (b, D, N)
        G_buf = torch.empty_like(g_buf)  # (b, D, N)
        with torch.no_grad():
            for r0 in range(0, batch, rows_max):
                rows = slice(r0, r0 + rows_max)
                n_rows = len(range(batch)[rows])
                states, decays = states_buf[:, :n_rows], decays_buf[:, :n_rows]  # (L, b, D, N)
                g, G = g_buf[:n_rows].zero_(), G_buf[:n_rows]  # (b, D, N); g = dL/dh_t
                _states_of_block(delta[:, rows], w[:, rows], A, B[:, rows], states, decays)
                for t in reversed(range(length)):
                    dy_t = dy[t, rows]  # (b, D)
                    g.addcmul_(dy_t.unsqueeze(-1), C[t, rows].unsqueeze(1))  # (b, D, N)
                    torch.bmm(dy_t.unsqueeze(1), states[t], out=d_C[t, rows].unsqueeze(1))  # (b, 1, N)
                    torch.bmm(g, B[t, rows].unsqueeze(-1), out=d_w[t, rows].unsqueeze(-1))  # (b, D, 1)
                    torch.bmm(w[t, rows].unsqueeze(1), g, out=d_B[t, rows].unsqueeze(1))  # (b, 1, N)
                    if t == 0:
                        break  # h_{-1} = 0: delta_0 only enters through w_0
                    g.mul_(decays[t])  # (b, D, N) = exp(delta_t A) g_t, the carry to t-1
                    torch.mul(g, states[t - 1], out=G)  # (b, D, N) = g_t exp(delta_t A) h_{t-1}
                    if n_rows == 1:  # dA += G delta_t, in place: no temporary at Mamba-S's size
                        d_A.addcmul_(G[0], delta[t, r0].unsqueeze(-1))  # (D, N)
                    else:
                        d_A.add_(torch.einsum("bdn,bd->dn", G, delta[t, rows]))  # (D, N)
                    G.mul_(A)  # (b, D, N) = G_t A
                    torch.sum(G, dim=-1, out=d_delta[t, rows])  # (b, D)
        return d_delta, d_w, d_A, d_B, d_C


def scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The same scan as a plain loop over time that autograd differentiates (slow, readable)."""
    dtype_in = u.dtype
    f = torch.promote_types(dtype_in, torch.float32)
    u, delta, A, B, C = u.to(f), delta.to(f), A.to(f), B.to(f), C.to(f)  # (B, D, L), (B, N, L)
    if delta_bias is not None:
        delta = delta + delta_bias.to(f)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], A.shape[0], A.shape[1])  # (B, D, N)
    ys = []
    for t in range(u.shape[2]):
        decay = torch.exp(delta[:, :, t, None] * A)  # (B, D, N)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]  # (B, D, N)
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))  # (B, D)
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + u * D.to(f)[:, None]
    if z is not None:
        y = y * F.silu(z.to(f))
    return y.to(dtype_in)
