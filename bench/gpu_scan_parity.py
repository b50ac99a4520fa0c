"""GPU check: our selective scan against mamba_ssm's CUDA forward kernel, built from its source.

mamba-ssm ships source only and a full build (every arch, forward and backward) takes far longer
than a borrowed GPU is held, so this script compiles just the three forward kernels for the GPU at
hand with `torch.utils.cpp_extension.load`, from an unmodified mamba-ssm sdist, and a copy of its
`selective_scan.cpp` with the backward entry point cut out (its kernels are not compiled). Then it
compares `lvmcore.models.scan.selective_scan` (the pure-PyTorch path, on the same CUDA tensors and on
CPU) with the kernel's output on random inputs, and times both at the Mamba-S shape.

    python bench/gpu_scan_parity.py --mamba-sdist .device/mamba_ssm-2.3.2.post1.tar.gz

Exit status 0 when every case is within tolerance.
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lvmcore.models.scan import selective_scan  # noqa: E402

NVCC_FLAGS = [
    "-O3", "-std=c++17",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
]


def forward_only_binding(source: str) -> str:
    """mamba's selective_scan.cpp without `selective_scan_bwd` (whose kernels we do not compile)."""
    start = source.index("std::vector<at::Tensor>\nselective_scan_bwd(")
    end = source.index("PYBIND11_MODULE")
    trimmed = source[:start] + source[end:]
    return re.sub(r'\s*m\.def\("bwd".*?;\n', "\n", trimmed)


def build_kernel(sdist: Path, workdir: Path):
    from torch.utils.cpp_extension import load

    with tarfile.open(sdist) as archive:
        archive.extractall(workdir, filter="data")
    root = next(workdir.glob("mamba_ssm-*"))
    csrc = root / "csrc" / "selective_scan"
    binding = csrc / "selective_scan_fwd_only.cpp"
    binding.write_text(forward_only_binding((csrc / "selective_scan.cpp").read_text()))
    major, minor = torch.cuda.get_device_capability()
    arch = [f"-gencode=arch=compute_{major}{minor},code=sm_{major}{minor}"]
    started = time.perf_counter()
    module = load(
        name="selective_scan_cuda_fwd",
        sources=[str(binding)] + [str(csrc / f"selective_scan_fwd_{t}.cu") for t in ("fp32", "fp16", "bf16")],
        extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=NVCC_FLAGS + arch,
        extra_include_paths=[str(csrc)],
        build_directory=str(workdir),
        verbose=False,
    )
    print(f"built forward kernels for sm_{major}{minor} in {time.perf_counter() - started:.0f} s")
    return module


def random_case(batch: int, dim: int, length: int, state: int, dtype: torch.dtype, device: str, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u, delta, z = r(batch, dim, length), 0.5 * r(batch, dim, length), r(batch, dim, length)
    A = -torch.exp(0.5 * r(dim, state))  # negative real, as Mamba's -exp(A_log)
    B, C = r(batch, state, length), r(batch, state, length)
    D, delta_bias = r(dim), 0.1 * r(dim)
    to = lambda t, dt: t.to(device=device, dtype=dt).contiguous()  # noqa: E731
    return dict(u=to(u, dtype), delta=to(delta, dtype), A=to(A, torch.float32), B=to(B, dtype), C=to(C, dtype),
                D=to(D, torch.float32), z=to(z, dtype), delta_bias=to(delta_bias, torch.float32))


def kernel_forward(module, case: dict) -> torch.Tensor:
    groups = lambda t: t.unsqueeze(1).contiguous()  # (B, N, L) -> (B, 1, N, L), as selective_scan_fn does  # noqa: E731
    out = module.fwd(case["u"], case["delta"], case["A"], groups(case["B"]), groups(case["C"]), case["D"], case["z"], case["delta_bias"], True)
    return out[2] if len(out) > 2 else out[0]  # out_z when z is given


def ours(case: dict) -> torch.Tensor:
    return selective_scan(case["u"], case["delta"], case["A"], case["B"], case["C"], case["D"], case["z"],
                          delta_bias=case["delta_bias"], delta_softplus=True, use_cuda_kernel=False)


def timed(fn, repeats: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mamba-sdist", type=Path, required=True)
    parser.add_argument("--build-dir", type=Path, default=None, help="reuse a build directory (ninja rebuilds only what changed)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare")
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    workdir = args.build_dir or Path(tempfile.mkdtemp(prefix="ssm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    module = build_kernel(args.mamba_sdist, workdir)
    failures = 0
    cases = [(2, 64, 5, 16, torch.float32, 2e-4), (4, 256, 5, 128, torch.float32, 2e-4), (3, 96, 37, 16, torch.float32, 5e-4),
             (4, 256, 5, 128, torch.bfloat16, 5e-2)]
    for seed, (batch, dim, length, state, dtype, tol) in enumerate(cases):
        case = random_case(batch, dim, length, state, dtype, "cuda", seed)
        reference = kernel_forward(module, case).float()
        on_gpu = ours(case).float()
        on_cpu = ours({k: v.cpu() for k, v in case.items()}).float()
        scale = reference.abs().max().item()
        err_gpu = (on_gpu - reference).abs().max().item() / scale
        err_cpu = (on_cpu - reference.cpu()).abs().max().item() / scale
        ok = err_gpu <= tol and err_cpu <= tol
        failures += not ok
        print(f"B={batch} D={dim} L={length} N={state} {str(dtype)[6:]:8s} rel.max.err ours-cuda {err_gpu:.2e}  ours-cpu {err_cpu:.2e}  tol {tol:.0e}  {'OK' if ok else 'FAIL'}")
    case = random_case(256, 1536, 5, 128, torch.float32, "cuda", 99)  # Mamba-S: d_inner 1536, d_state 128, C=5
    t_kernel = timed(lambda: kernel_forward(module, case))
    t_ours = timed(lambda: ours(case))
    print(f"Mamba-S shape fwd, median of 20: kernel {1e3 * t_kernel:.3f} ms, ours (PyTorch on GPU) {1e3 * t_ours:.3f} ms, ratio {t_ours / t_kernel:.1f}x")
    print("PASS" if failures == 0 else f"FAIL: {failures} case(s) out of tolerance")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
