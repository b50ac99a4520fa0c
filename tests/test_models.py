"""Every model preset: shapes, unit outputs, config round trips, parameter counts, weight names,
the residual head (copy-last at init, old configs load without it), and a transformer that learns."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lvmcore.errors import ArtifactError
from lvmcore.models import PRESETS, LatentVectorModel, build_model, model_config_from_dict
from lvmcore.models import base as base_module
from lvmcore.models.mamba import MambaConfig, MambaMixer
from lvmcore.training.in_batch_loss import info_nce

DIM = 64  # small D for every preset but the parameter-count test
BF16_MAX_ABS = 1e-2  # bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4%); measured <= 3.7e-3 at D=64
BF16_MIN_COSINE = 0.999  # measured >= 0.99995
# Mamba-S (53M parameters) takes seconds per test on 2 cores: marked slow; its count and weight
# names are checked fast below.
PRESET_NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "mamba-s" else n for n in sorted(PRESETS)]


def contexts(batch: int = 4, length: int = 5, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch, length, dim, generator=g), dim=-1)  # (B, C, D)


def built(name: str, dim: int = DIM, seed: int = 0, **overrides) -> LatentVectorModel:
    torch.manual_seed(seed)
    return build_model(PRESETS[name](dim=dim, **overrides)).eval()


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_predicts_unit_vectors_of_the_input_dim(name):
    model = built(name)
    with torch.no_grad():
        pred = model(contexts())
    assert pred.shape == (4, DIM), f"{name}: prediction shape {tuple(pred.shape)}, expected (4, {DIM})"
    assert pred.dtype == torch.float32
    norms = pred.norm(dim=-1)
    assert torch.allclose(norms, torch.ones(4), atol=1e-5), f"{name}: prediction norms {norms.tolist()}"
    assert model.config.dim == DIM and model.tower_count in (1, 2)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_config_round_trips_through_a_json_dict(name):
    config = PRESETS[name](dim=DIM)
    as_dict = json.loads(json.dumps(config.to_dict()))
    assert as_dict["kind"] == config.kind
    assert model_config_from_dict(as_dict) == config
    torch.manual_seed(1)
    a = build_model(config).state_dict()
    torch.manual_seed(1)
    b = build_model(as_dict).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{name}: dict-built model differs"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_output_is_deterministic_under_a_fixed_seed(name):
    x = contexts()
    outputs = []
    for _ in range(2):
        model = built(name, seed=123).train()  # dropout on: the seed must fix it too
        torch.manual_seed(7)
        outputs.append(model(x).detach())
    assert torch.equal(outputs[0], outputs[1]), f"{name}: two runs under one seed differ"
    other = built(name, seed=124)
    with torch.no_grad():
        assert not torch.equal(other(x), built(name, seed=123)(x)), f"{name}: the seed changes nothing"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_bf16_autocast_on_cpu_is_within_tolerance_of_fp32(name):
    model, x = built(name), contexts(batch=16)
    with torch.no_grad():
        fp32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x)
    max_abs = (fp32 - bf16.float()).abs().max().item()
    min_cos = (fp32 * bf16.float()).sum(-1).min().item()
    assert max_abs <= BF16_MAX_ABS, f"{name}: bf16 differs from fp32 by {max_abs:.2e} > {BF16_MAX_ABS}"
    assert min_cos >= BF16_MIN_COSINE, f"{name}: bf16/fp32 cosine {min_cos:.6f} < {BF16_MIN_COSINE}"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_parameter_gets_a_finite_gradient(name):
    model = built(name).train()
    x = contexts()
    loss = -(model(x) * model.encode_bank(x[:, -1])).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"{name}: no finite gradient for {missing}"


def test_mamba_s_has_about_53_2m_parameters_at_d768():
    """53,177,856 with dt_rank = d_model; the arithmetic is in lvmcore/models/mamba.py's docstring."""
    model = build_model(PRESETS["mamba-s"](dim=768))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 53.2e6) / 53.2e6 <= 0.02, f"Mamba-S has {count:,} parameters, expected ~53.2M (2%)"


def mamba_ssm_mixer_shapes(d_model, d_state, d_conv, expand, dt_rank):
    """Names and shapes of mamba_ssm.modules.mamba_simple.Mamba's state_dict (bias=False, conv_bias=True)."""
    d_inner = expand * d_model
    return {
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize("preset", ["mamba-xs", "mamba-s"])
def test_mixer_state_dict_matches_mamba_ssm_names_and_shapes(preset):
    config = PRESETS[preset](dim=768)
    mixer = MambaMixer(config)
    ours = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    theirs = mamba_ssm_mixer_shapes(config.d_model, config.d_state, config.d_conv, config.expand, config.dt_rank)
    assert ours == theirs


def test_mixer_init_matches_mamba_ssm():
    mixer = MambaMixer(MambaConfig(d_model=32, d_state=8, dt_rank="auto"))
    assert mixer.dt_rank == math.ceil(32 / 16)
    assert torch.equal(mixer.A_log[0], torch.log(torch.arange(1, 9, dtype=torch.float32)))  # S4D-real
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6, "softplus(dt bias) outside [dt_min, dt_max]"
    assert torch.equal(mixer.D.detach(), torch.ones(64))


def test_weights_from_mambapy_give_the_same_residual_stack_output():
    """mambapy's Mamba uses mamba_ssm's names; its layers load into ours and compute the same thing."""
    mambapy = pytest.importorskip("mambapy.mamba", reason="mambapy is not installed (bench extra)")
    ours = built("mamba-xs")
    config = ours.config
    torch.manual_seed(5)
    theirs = mambapy.Mamba(
        mambapy.MambaConfig(
            d_model=config.d_model, n_layers=config.n_layers, d_state=config.d_state,
            expand_factor=config.expand, d_conv=config.d_conv, dt_rank=config.dt_rank,
        )
    ).eval()
    ours.layers.load_state_dict(theirs.layers.state_dict(), strict=True)
    h = torch.randn(3, 5, config.d_model)  # (B, L, d_model)
    with torch.no_grad():
        expected = theirs(h)
        got = h
        for layer in ours.layers:
            got = layer(got)
    err = (got - expected).abs().max().item()
    assert err <= 1e-4, f"residual stack differs from mambapy's by {err:.2e}"


@pytest.mark.parametrize("name", ["mamba-xs", "transformer"])
def test_sequence_mixing_is_causal(name):
    """Position t of the hidden sequence must not see positions > t (conv padding, attention mask)."""
    model = built(name)
    x = contexts(batch=2)
    y = x.clone()
    y[:, -1] = F.normalize(torch.randn(2, DIM), dim=-1)  # change only the last position
    stack = model.layers if name == "mamba-xs" else model.blocks

    def hidden(inputs):
        h = model.input_proj(inputs)
        if name == "transformer":
            h = h + model.position(torch.arange(inputs.shape[1]))
        for layer in stack:
            h = layer(h)
        return h  # (B, C, d_model)

    with torch.no_grad():
        hx, hy = hidden(x), hidden(y)
    assert torch.allclose(hx[:, :-1], hy[:, :-1], atol=1e-6), f"{name}: earlier positions saw the last one"
    assert not torch.allclose(hx[:, -1], hy[:, -1]), f"{name}: the last position ignored its own input"


def test_one_tower_encode_bank_returns_the_bank_unchanged():
    vectors = contexts()[:, 0]
    for name in ("mamba-xs", "lstm", "gru", "transformer"):
        model = built(name)
        assert model.tower_count == 1
        assert model.encode_bank(vectors) is vectors


def test_two_tower_encode_bank_runs_the_payload_tower(monkeypatch):
    model = built("two-tower")
    assert model.tower_count == 2
    with torch.no_grad():
        model.payload_tower.proj.weight.normal_(std=0.1)  # the tower starts at the identity: move it
        vectors = contexts(batch=10)[:, 0] * 3.0  # (N, D), not unit
        encoded = model.encode_bank(vectors)
        assert encoded.shape == vectors.shape
        assert torch.allclose(encoded.norm(dim=-1), torch.ones(10), atol=1e-5)
        assert not torch.allclose(encoded, F.normalize(vectors, dim=-1), atol=1e-3)
        monkeypatch.setattr(base_module, "BANK_ROWS_PER_PASS", 3)
        assert torch.allclose(model.encode_bank(vectors), encoded, atol=1e-6), "passes change the encoding"


def test_build_model_rejects_an_unknown_kind():
    with pytest.raises(ArtifactError, match="unknown model kind 'mamba-9000'"):
        build_model({"kind": "mamba-9000", "dim": 768})
    with pytest.raises(ArtifactError, match="unknown model kind"):
        build_model(object())


def test_config_dict_with_unknown_keys_is_rejected():
    bad = {**PRESETS["gru"](dim=DIM).to_dict(), "hiden": 3}
    with pytest.raises(ArtifactError, match="unknown keys \\['hiden'\\]"):
        model_config_from_dict(bad)


def test_transformer_rejects_a_context_longer_than_its_position_table():
    model = built("transformer")
    with pytest.raises(ArtifactError, match="max_context"):
        model(contexts(length=model.config.max_context + 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_models_on_cuda_match_cpu(name):
    """Same weights on CUDA give the CPU prediction (with mamba_ssm, through its kernel)."""
    model = built(name)
    x = contexts(batch=8)
    with torch.no_grad():
        cpu = model(x)
        cuda = model.cuda()(x.cuda()).cpu()
    err = (cpu - cuda).abs().max().item()
    assert err <= 1e-3, f"{name}: CUDA prediction differs from CPU by {err:.2e}"


# --------------------------------------------------------------------------- residual head


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_residual_model_at_initialisation_is_exactly_copy_last(name, mode):
    """normalize(x_C + f(context)) with f's output layer at zero: step 0 predicts the last context vector."""
    model = built(name, residual=True)
    model.train(mode == "train")  # dropout on or off: a zero output layer cancels it either way
    x = contexts(batch=8) * 2.5  # not unit: the head normalises x_C, it does not assume it
    with torch.no_grad():
        pred = model(x)
    expected = F.normalize(x[:, -1], dim=-1)
    err = (pred - expected).abs().max().item()
    assert err <= 1e-6, f"{name} ({mode}): residual model at init differs from normalised copy-last by {err:.2e} > 1e-6"
    assert model.config.to_dict()["residual"] is True


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_a_stored_config_without_residual_loads_as_the_non_residual_model(name):
    """Checkpoints written before the field existed have no "residual" key: they must rebuild as they were trained."""
    stored = PRESETS[name](dim=DIM).to_dict()
    stored.pop("residual")
    config = model_config_from_dict(stored)
    assert config.residual is False
    model = built(name)
    assert model.config.residual is False
    with torch.no_grad():
        pred = model(contexts())
    copy_last = F.normalize(contexts()[:, -1], dim=-1)
    assert (pred - copy_last).abs().max().item() > 1e-2, f"{name}: a non-residual model predicts copy-last at init"


@pytest.mark.parametrize("name", [n for n in sorted(PRESETS) if n != "mamba-s"])
def test_residual_model_learns_away_from_copy_last(name):
    """Zero output layer, but the network behind it still gets a gradient after one step: training moves it."""
    model = built(name, residual=True).train()
    x = contexts(batch=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        (-(model(x) * model.encode_bank(x[:, 0])).sum()).backward()  # pull the prediction towards the first chunk
        optimizer.step()
    model.eval()
    with torch.no_grad():
        moved = (model(x) - F.normalize(x[:, -1], dim=-1)).abs().max().item()
    assert moved > 1e-3, f"{name}: residual model still predicts copy-last after two steps (max change {moved:.2e})"


# --------------------------------------------------------------------------- the transformer learns


def rotation_task(count: int = 2048, dim: int = DIM, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Contexts (M, C, D) of random unit vectors and targets (M, D) = Q x_C for one fixed rotation Q."""
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))  # (D, D) orthogonal
    x = F.normalize(torch.randn(count, 5, dim, generator=g), dim=-1)  # (M, C, D)
    return x, x[:, -1] @ rotation.T  # (M, D)


def train_on_rotation(model: torch.nn.Module, steps: int = 30, batch: int = 64) -> list[float]:
    """In-batch InfoNCE (tau 0.07), AdamW at 1e-3 as `python -m train`; the loss of every step."""
    x, y = rotation_task()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(x), (batch,), generator=g)
        loss = info_nce(model(x[rows]), y[rows], torch.arange(batch), 0.07)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.usefixtures("one_torch_thread")
def test_transformer_learns_a_fixed_rotation_within_thirty_steps():
    """The `transformer` preset reached R@5 0.0% on the embedded bank with cosine ~0.10 to every offset:
    PyTorch's N(0, 1) position table drowned the projected context (norm 16 vs 0.66), so every window
    looked the same. With nanoGPT's N(0, 0.02) init the loss falls by 90% within 30 steps (measured
    5.26 -> 0.55); the same network re-initialised with PyTorch's defaults stays flat (5.46 -> 5.26)."""
    first, last = lambda losses: sum(losses[:5]) / 5, lambda losses: sum(losses[-5:]) / 5
    fixed = train_on_rotation(built("transformer", seed=0))
    assert last(fixed) < 0.5 * first(fixed), (
        f"transformer loss {first(fixed):.3f} -> {last(fixed):.3f} in 30 steps on next = rotation(last): "
        "it should fall below half; the init (position table vs content scale) is the likely cause"
    )
    old_init = built("transformer", seed=0)
    for module in old_init.modules():
        if module is not old_init and hasattr(module, "reset_parameters"):
            module.reset_parameters()  # PyTorch's defaults: Embedding N(0, 1), Linear Kaiming-uniform
    stuck = train_on_rotation(old_init)
    assert last(stuck) > 0.8 * first(stuck), (
        f"with PyTorch's default init the loss went {first(stuck):.3f} -> {last(stuck):.3f}: the task no longer shows the init matters"
    )


def test_transformer_position_table_does_not_drown_the_content():
    """At init the projected context and the position vector have comparable norms (nanoGPT init), so
    predictions differ between windows: measured mean pairwise cosine 0.51, was 0.999 with N(0, 1) positions."""
    model = built("transformer", dim=384)
    x = contexts(batch=64, dim=384)
    with torch.no_grad():
        content = model.input_proj(x).norm(dim=-1).mean().item()
        position = model.position(torch.arange(5)).norm(dim=-1).mean().item()
        pred = model(x)
    assert 0.25 < content / position < 4, f"content norm {content:.3f} vs position norm {position:.3f}: one drowns the other"
    pairwise = (pred @ pred.T).mean().item()
    assert pairwise < 0.9, f"predictions of 64 random windows have mean pairwise cosine {pairwise:.3f}: the model ignores its input"


@pytest.mark.parametrize("name", ["mamba-xs", "gru", "two-tower"])
def test_residual_base_is_the_last_chunk_that_article_dropout_left(name):
    """Article dropout blanks the last k positions; the residual then starts from the last chunk still
    there, not from a zero vector (whose normalisation has a 1/eps gradient: an infinite norm in training)."""
    model = built(name, residual=True)
    x = contexts(batch=6)
    x[:3, 3:] = 0.0  # rows 0-2: the last two positions blanked
    x[5] = 0.0  # row 5: nothing left at all
    with torch.no_grad():
        pred = model(x)
    torch.testing.assert_close(pred[:3], F.normalize(x[:3, 2], dim=-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(pred[3:5], F.normalize(x[3:5, -1], dim=-1), atol=1e-6, rtol=0)
    assert torch.isfinite(pred).all() and torch.count_nonzero(pred[5]) == 0
