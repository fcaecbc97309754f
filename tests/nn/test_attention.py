"""Attention against torch 2.13: ``F.scaled_dot_product_attention`` (both lowerings),
``F.multi_head_attention_forward`` and ``nn.MultiheadAttention``: outputs, attention weights,
input and parameter gradients over fixed-seed grids of every flag; state dicts, ``from_torch``,
reprs, initial distributions, dropout keys, JAX transformations, and torch's errors.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn
from fparam.nn import functional as F
from fparam.nn.functional import attention as A

# Largest absolute errors measured over the grids below (jax CPU vs torch 2.13 CPU, float32):
# SDPA outputs and gradients 4.8e-7 (values of order 1); MHA outputs, weights and gradients
# 5.7e-6, on parameter gradients up to 15 in size. Tolerances: above both, by about 2x.
TOL = {"rtol": 1e-5, "atol": 1e-5}

# Most programs here are compiled at XLA's backend optimisation level 0 and with XLA CPU's
# classic (not MLIR) fusion emitters: they check numerics on tiny shapes, and these options
# take compiling, nearly all of this file's time, down about 5x (measured on the MHA grid
# programs: 1.1 s -> 0.2 s each). test_fully_masked_rows_match_torch compiles with the defaults.
_QUICK = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
_jit = functools.partial(jax.jit, compiler_options=_QUICK)


def _t(x: Any, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(x), requires_grad=grad)


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention


def _balanced(seed: int, n: int, **options: list[Any]) -> list[dict[str, Any]]:
    """``n`` configurations in which each value of each option appears equally often (+-1):
    every option's values are cycled to length ``n`` and shuffled on their own."""
    rng = np.random.default_rng(seed)
    columns = {k: rng.permutation(np.resize(np.arange(len(v)), n)) for k, v in options.items()}
    return [{k: v[columns[k][i]] for k, v in options.items()} for i in range(n)]


def _sdpa_configs(n: int = 12) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1234)
    configs = _balanced(
        1234,
        n,
        batch=["unbatched", (), (2,), (2, 1)],
        hq=[1, 2, 4],
        gqa=[False, True],
        kv_heads=["same", "one"],
        mask=["none", "causal", "bool", "float", "bool_dead", "float_dead", "row"],
        Ev=["E", 3],
        scale=[None, 0.3],
    )
    for c in configs:
        c["unbatched"] = c["batch"] == "unbatched"
        c["batch"] = () if c["unbatched"] else c["batch"]
        c["gqa"] = c["gqa"] and not c["unbatched"] and c["hq"] > 1
        c["hk"] = 1 if c["kv_heads"] == "one" else (c["hq"] // 2 if c["gqa"] else c["hq"])
        c["causal"] = c["mask"] == "causal"
        c["mask"] = "none" if c["causal"] else c["mask"]
        c["L"], c["S"] = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        c["E"] = int(rng.choice([2, 4]))
        c["Ev"] = c["E"] if c["Ev"] == "E" else 3
    return configs


def _sdpa_arrays(c: dict[str, Any], seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    heads_q = () if c["unbatched"] else (c["hq"],)
    heads_k = () if c["unbatched"] else (c["hk"],)
    q = rng.standard_normal((*c["batch"], *heads_q, c["L"], c["E"])).astype(np.float32)
    k = rng.standard_normal((*c["batch"], *heads_k, c["S"], c["E"])).astype(np.float32)
    v = rng.standard_normal((*c["batch"], *heads_k, c["S"], c["Ev"])).astype(np.float32)
    cot = rng.standard_normal((*c["batch"], *heads_q, c["L"], c["Ev"])).astype(np.float32)
    mask = None
    L, S = c["L"], c["S"]
    if c["mask"] != "none":
        shape = (L, S) if c["mask"] != "row" else (1, S)
        keep = rng.random(shape) > 0.3
        keep[..., 0] = True
        if c["mask"].endswith("dead"):
            keep[L // 2] = False  # a query row that sees no key at all
        if c["mask"].startswith("float"):
            mask = np.where(keep, rng.standard_normal(shape), -np.inf).astype(np.float32)
        else:
            mask = keep
    return q, k, v, cot, mask


def _torch_sdpa(c: dict[str, Any], q, k, v, cot, mask):
    tq, tk, tv = _t(q, True), _t(k, True), _t(v, True)
    out = torch.nn.functional.scaled_dot_product_attention(
        tq,
        tk,
        tv,
        attn_mask=None if mask is None else _t(mask),
        is_causal=c["causal"],
        scale=c["scale"],
        enable_gqa=c["gqa"],
    )
    out.backward(_t(cot))
    return [x.detach().numpy() for x in (out, tq.grad, tk.grad, tv.grad)]


def _fparam_sdpa(fns, q, k, v, cot, mask):
    """Outputs and input gradients of each function, all in one compiled program."""

    @_jit
    def run(q, k, v, cot, mask):
        results = []
        for fn in fns:
            out, vjp = jax.vjp(lambda q, k, v, fn=fn: fn(q, k, v, mask), q, k, v)
            results.append((out, *vjp(cot)))
        return results

    return [[np.asarray(x) for x in r] for r in run(q, k, v, cot, mask)]


@pytest.mark.parametrize("index", range(12))
def test_sdpa_matches_torch_on_both_paths(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _sdpa_configs()[index]
    q, k, v, cot, mask = _sdpa_arrays(c, index)
    want = _torch_sdpa(c, q, k, v, cot, mask)
    scale = 1 / math.sqrt(c["E"]) if c["scale"] is None else c["scale"]
    calls = []
    original = jax.nn.dot_product_attention
    monkeypatch.setattr(
        jax.nn, "dot_product_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw)
    )
    explicit, public = _fparam_sdpa(
        [
            lambda q, k, v, m: A._sdpa_explicit(
                q, k, v, m, 0.0, c["causal"], scale, c["gqa"], None
            ),
            lambda q, k, v, m: F.scaled_dot_product_attention(
                q, k, v, m, is_causal=c["causal"], scale=c["scale"], enable_gqa=c["gqa"],
                implementation="xla",
            ),
        ],
        q, k, v, cot, mask,
    )  # fmt: skip
    # The fused path runs whenever the call allows it (see fparam.nn.functional.attention);
    # with implementation=None, not on the CPU, where the explicit path is faster.
    assert bool(calls) == (c["Ev"] == c["E"])
    calls.clear()
    default = _jit(lambda q: F.scaled_dot_product_attention(q, q, q))(q)
    assert not calls and default.shape == q.shape
    for got in (explicit, public):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **TOL)
    if c["mask"].endswith("dead"):
        assert not np.any(public[0][..., c["L"] // 2, :])  # torch's zeros, not NaN


def test_sdpa_broadcasts_batch_dims_like_torch() -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 2, 2, 4, 4)).astype(np.float32)
    k = rng.standard_normal((2, 1, 5, 4)).astype(np.float32)
    v = rng.standard_normal((1, 5, 4)).astype(np.float32)
    mask = rng.random((2, 1, 4, 5)) > 0.4
    mask[..., 0] = True
    want = torch.nn.functional.scaled_dot_product_attention(_t(q), _t(k), _t(v), _t(mask))
    got = _jit(F.scaled_dot_product_attention)(q, k, v, mask)
    np.testing.assert_allclose(got, want.numpy(), **TOL)


def test_sdpa_dropout_is_torchs_formula_with_the_key() -> None:
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 2, 3, 4)).astype(np.float32) for _ in range(3))
    p = 0.4

    @_jit
    def run(q, key):
        explicit = F.scaled_dot_product_attention(q, k, v, dropout_p=p, rng=key)
        with fparam.rng(key):
            scoped = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        weights = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / 2.0, axis=-1)
        keep = jax.random.bernoulli(key, 1 - p, weights.shape).astype(jnp.float32)
        # p = 1 zeroes everything and needs no key, as torch draws nothing.
        ones = F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
        return explicit, scoped, (weights * keep / (1 - p)) @ v, ones

    key = jax.random.key(7)
    explicit, scoped, formula, ones = run(q, key)
    np.testing.assert_allclose(explicit, formula, **TOL)
    # The scope's first draw is fold_in(key, 0); the same key, the same draws.
    again = run(q, jax.random.fold_in(key, 0))[0]
    np.testing.assert_array_equal(scoped, again)
    np.testing.assert_array_equal(run(q, key)[0], explicit)
    assert not np.allclose(run(q, jax.random.key(8))[0], explicit)
    assert not np.any(ones)
    with pytest.raises(fparam.RandomnessError, match="scaled_dot_product_attention"):
        _jit(lambda q: F.scaled_dot_product_attention(q, k, v, dropout_p=p))(q)


def test_sdpa_half_precision_keeps_torchs_float32_intermediates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((2, 2, 6, 8)).astype(np.float32) for _ in range(3))
    mask = rng.random((6, 6)) > 0.3
    calls = []
    original = jax.nn.dot_product_attention
    monkeypatch.setattr(
        jax.nn, "dot_product_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw)
    )

    @functools.partial(_jit, static_argnums=3)
    def run(q, k, v, impls):
        return [F.scaled_dot_product_attention(q, k, v, mask, implementation=i) for i in impls]

    for tdtype, jdtype, tol in (
        (torch.bfloat16, jnp.bfloat16, 1e-2),
        (torch.float16, jnp.float16, 2e-3),
    ):
        tq, tk, tv = (_t(x).to(tdtype) for x in (q, k, v))
        want = torch.nn.functional.scaled_dot_product_attention(
            tq.requires_grad_(), tk, tv, _t(mask)
        )  # the math path (requires_grad): float32 intermediates
        # JAX's XLA lowering cannot compile its float16 dot on CPU ('F16_F16_F32' precision).
        impls = (None, "xla") if jdtype == jnp.bfloat16 else (None,)
        got = run(*(jnp.asarray(x, jdtype) for x in (q, k, v)), impls)
        want = want.detach().float().numpy()
        # The explicit path rounds only its result, as torch: within one rounding of it.
        np.testing.assert_allclose(np.asarray(got[0], np.float32), want, rtol=tol, atol=tol)
        for out in got[1:]:  # the fused path: probabilities rounded too
            np.testing.assert_allclose(
                np.asarray(out, np.float32), want, rtol=2 * tol, atol=2 * tol
            )
        assert all(out.dtype == jdtype for out in got)
    assert len(calls) == 1  # only the call naming an implementation


def test_multihead_attention_bfloat16() -> None:
    """A bfloat16 layer (torch's dtype=) through both branches, within bfloat16 rounding."""
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(8, 2, add_bias_kv=True, add_zero_attn=True)
    t = t.to(torch.bfloat16)
    m = fparam.from_torch(t)
    x = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
    kpm = np.zeros((2, 3), bool)
    kpm[0, 1] = True
    got = _jit(lambda m, x: [m(x, x, x, kpm, need)[0] for need in (True, False)])(
        m, jnp.asarray(x, jnp.bfloat16)
    )
    tx = _t(x).bfloat16()
    for need, out in zip((True, False), got):
        want = t(tx, tx, tx, key_padding_mask=_t(kpm), need_weights=need)[0]
        assert out.dtype == jnp.bfloat16
        # One bfloat16 rounding of values below 1: 2**-9.
        np.testing.assert_allclose(
            np.asarray(out, np.float32), want.float().detach().numpy(), rtol=0, atol=4e-3
        )


SDPA_ERRORS = [
    ("rank", dict(q=(4,), k=(5, 4), v=(5, 4)), RuntimeError, "at least 2 dimensional"),
    ("embed", dict(q=(2, 3, 4), k=(2, 5, 3), v=(2, 5, 4)), RuntimeError, "key"),
    ("seq", dict(q=(2, 3, 4), k=(2, 5, 4), v=(2, 4, 4)), RuntimeError, "value"),
    ("heads", dict(q=(2, 4, 3, 4), k=(2, 2, 5, 4), v=(2, 2, 5, 4)), RuntimeError, "key"),
    ("gqa", dict(q=(2, 4, 3, 4), k=(2, 3, 5, 4), v=(2, 3, 5, 4), gqa=True), RuntimeError, "heads"),
    ("dtype", dict(q=(3, 4), k=(5, 4), v=(5, 4), kdtype=torch.float64), RuntimeError, "dtype"),
    ("mask dtype", dict(q=(3, 4), k=(5, 4), v=(5, 4), mask=np.ones((3, 5), np.int32)),
     RuntimeError, "attn_mask"),
    ("mask shape", dict(q=(3, 4), k=(5, 4), v=(5, 4), mask=np.ones((4, 5), bool)),
     RuntimeError, "attn_mask"),
    ("mask and causal", dict(q=(3, 4), k=(5, 4), v=(5, 4), mask=np.ones((3, 5), bool),
     causal=True), RuntimeError, "is_causal"),
    ("dropout", dict(q=(3, 4), k=(5, 4), v=(5, 4), p=1.5), RuntimeError, "dropout"),
]  # fmt: skip


@pytest.mark.parametrize("case", SDPA_ERRORS, ids=[c[0] for c in SDPA_ERRORS])
def test_sdpa_errors_are_torchs(case: Any) -> None:
    _, spec, error, words = case
    arrays = [np.ones(spec[n], np.float32) for n in ("q", "k", "v")]
    kdtype = spec.get("kdtype")
    targs = [torch.tensor(a) for a in arrays]
    targs[0].requires_grad_()  # torch's reference (math) path: the one its docs describe
    fargs: list[Any] = list(arrays)
    if kdtype is not None:
        targs[1] = targs[1].to(kdtype)
        fargs[1] = np.ones(spec["k"], np.float16)
    mask = spec.get("mask")
    kw = dict(is_causal=spec.get("causal", False), enable_gqa=spec.get("gqa", False))
    p = spec.get("p", 0.0)
    with pytest.raises(error):
        torch.nn.functional.scaled_dot_product_attention(
            *targs, None if mask is None else torch.tensor(mask), p, **kw
        )
    with pytest.raises(error, match=words):
        F.scaled_dot_product_attention(*fargs, mask, p, **kw)


# --------------------------------------------------------------------------------------------
# MultiheadAttention


def _mha_configs(n: int = 16) -> list[dict[str, Any]]:
    rng = np.random.default_rng(99)
    configs = _balanced(
        99,
        n,
        bias=[True, False],
        add_bias_kv=[False, True],
        add_zero_attn=[False, True],
        kv=["same", "self", "kdim"],
        batch_first=[False, True],
        unbatched=[False, True, False],
        attn=["none", "bool2", "float2", "bool3", "float3", "bool2"],
        kpm=["none", "bool", "float"],
        need_weights=[True, False],
        average=[True, False],
        causal=[False, True],
    )
    for c in configs:
        c["causal"] = c["causal"] and c["attn"] != "none"
        c["L"], c["S"], c["N"] = (int(x) for x in rng.integers(1, [5, 5, 3]))
    return configs


def test_grids_cover_every_flag() -> None:
    """The fixed-seed grids above reach every branch of torch's functions."""
    sdpa = _sdpa_configs()
    assert {c["mask"] for c in sdpa} == {"none", "bool", "float", "bool_dead", "float_dead", "row"}
    for flag in ("causal", "gqa", "unbatched"):
        assert {c[flag] for c in sdpa} == {False, True}, flag
    assert any(c["hk"] == 1 < c["hq"] and not c["gqa"] for c in sdpa)  # broadcast kv heads
    assert {c["Ev"] == c["E"] for c in sdpa} == {False, True}  # both lowerings
    mha = _mha_configs()
    for flag in ("bias", "add_bias_kv", "add_zero_attn", "batch_first", "unbatched", "causal"):
        assert {c[flag] for c in mha} == {False, True}, flag
    for flag in ("need_weights", "average"):
        assert {c[flag] for c in mha} == {False, True}, flag
    assert {c["attn"] for c in mha} == {"none", "bool2", "float2", "bool3", "float3"}
    assert {c["kpm"] for c in mha} == {"none", "bool", "float"}
    assert {c["kv"] for c in mha} == {"same", "self", "kdim"}
    # torch's is_causal hint replaces attn_mask only without weights and padding mask.
    assert any(c["causal"] and not c["need_weights"] and c["kpm"] == "none" for c in mha)
    assert any(c["causal"] and (c["need_weights"] or c["kpm"] != "none") for c in mha)
    # Mismatched mask types (torch's deprecation warning).
    assert any(c["attn"] != "none" and c["kpm"] not in ("none", c["attn"][:-1]) for c in mha)


def _mha_pair(c: dict[str, Any], seed: int) -> tuple[torch.nn.MultiheadAttention, Any]:
    torch.manual_seed(seed)
    kdim, vdim = (5, 3) if c["kv"] == "kdim" else (None, None)
    kw = dict(
        bias=c["bias"],
        add_bias_kv=c["add_bias_kv"],
        add_zero_attn=c["add_zero_attn"],
        kdim=kdim,
        vdim=vdim,
        batch_first=c["batch_first"],
    )
    t = torch.nn.MultiheadAttention(8, 2, **kw)
    with torch.no_grad():
        for p in t.parameters():
            p.normal_(0, 0.5)  # biases too (torch starts them at zero)
    m = nn.MultiheadAttention(8, 2, **kw)
    m.load_state_dict(t.state_dict())
    return t, m


def _mha_inputs(c: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    L, S, N = c["L"], c["S"], c["N"]
    kdim, vdim = (5, 3) if c["kv"] == "kdim" else (8, 8)

    def seq(length: int, dim: int) -> np.ndarray:
        if c["unbatched"]:
            shape: tuple[int, ...] = (length, dim)
        elif c["batch_first"]:
            shape = (N, length, dim)
        else:
            shape = (length, N, dim)
        return rng.standard_normal(shape).astype(np.float32)

    query = seq(L, 8)
    if c["kv"] == "self":
        S = L
        key = value = query
    else:
        key, value = seq(S, kdim), seq(S, vdim)
    # Masks that leave every query row at least one key (a fully masked row is NaN in
    # torch's need_weights path: tested on its own below).
    keep = rng.random((L, S)) > 0.3
    keep[:, 0] = True
    if c["causal"]:
        keep = np.tril(np.ones((L, S), bool))
    attn_mask = None
    if c["attn"] != "none":
        heads = 1 if c["unbatched"] else N
        full = np.broadcast_to(keep, (heads * 2, L, S)) if c["attn"].endswith("3") else keep
        if c["attn"].endswith("3") and not c["causal"]:
            full = rng.random((heads * 2, L, S)) > 0.3
            full[..., 0] = True
        if c["attn"].startswith("bool"):
            attn_mask = ~np.asarray(full)
        else:
            attn_mask = np.where(full, rng.standard_normal(full.shape), -np.inf).astype(np.float32)
    kpm = None
    if c["kpm"] != "none":
        pad = rng.random((N, S)) > 0.7
        pad[:, 0] = False
        if c["unbatched"]:
            pad = pad[0]
        if c["kpm"] == "bool":
            kpm = pad
        else:
            kpm = np.where(pad, -np.inf, 0.5 * rng.standard_normal(pad.shape)).astype(np.float32)
    out_shape = (L, 8) if c["unbatched"] else ((N, L, 8) if c["batch_first"] else (L, N, 8))
    return dict(
        query=query,
        key=key,
        value=value,
        key_padding_mask=kpm,
        attn_mask=attn_mask,
        cot=rng.standard_normal(out_shape).astype(np.float32),
    )


def _torch_mha(t, c, x):
    tq = _t(x["query"], True)
    if c["kv"] == "self":
        tk = tv = tq
    else:
        tk, tv = _t(x["key"], True), _t(x["value"], True)
    t.zero_grad()
    out, weights = t(
        tq,
        tk,
        tv,
        key_padding_mask=None if x["key_padding_mask"] is None else _t(x["key_padding_mask"]),
        need_weights=c["need_weights"],
        attn_mask=None if x["attn_mask"] is None else _t(x["attn_mask"]),
        average_attn_weights=c["average"],
        is_causal=c["causal"],
    )
    loss = (out * _t(x["cot"])).sum() + (0 if weights is None else weights.sum())
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in t.named_parameters()}
    inputs = [tq.grad.numpy()] + ([] if c["kv"] == "self" else [tk.grad.numpy(), tv.grad.numpy()])
    w = None if weights is None else weights.detach().numpy()
    return out.detach().numpy(), w, grads, inputs


def _fparam_mha(m, c, x):
    self_attn = c["kv"] == "self"

    @_jit
    def run(m, q, k, v, kpm, mask, cot):
        def loss(m, q, k, v):
            if self_attn:
                k = v = q
            out, w = m(q, k, v, kpm, c["need_weights"], mask, c["average"], c["causal"])
            return jnp.sum(out * cot) + (0 if w is None else jnp.sum(w)), (out, w)

        (_, aux), grads = fparam.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(
            m, q, k, v
        )
        return aux, grads

    (out, w), (g_m, g_q, g_k, g_v) = run(
        m, x["query"], x["key"], x["value"], x["key_padding_mask"], x["attn_mask"], x["cot"]
    )
    grads = {n: np.asarray(p) for n, p in g_m.named_parameters()}
    inputs = [g_q] if self_attn else [g_q, g_k, g_v]
    return np.asarray(out), None if w is None else np.asarray(w), grads, inputs


@pytest.mark.parametrize("index", range(16))
def test_multihead_attention_matches_torch(index: int) -> None:
    c = _mha_configs()[index]
    t, m = _mha_pair(c, index)
    x = _mha_inputs(c, index)
    with warnings.catch_warnings(record=True) as torch_warnings:
        warnings.simplefilter("always")
        want = _torch_mha(t, c, x)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        got = _fparam_mha(m, c, x)
    # torch's deprecation warning for mismatched mask types, once, with its text.
    assert [str(w.message) for w in ours] == [str(w.message) for w in torch_warnings]
    np.testing.assert_allclose(got[0], want[0], **TOL)
    assert (got[1] is None) == (want[1] is None)
    if want[1] is not None:
        np.testing.assert_allclose(got[1], want[1], **TOL)
    assert list(got[2]) == list(want[2])
    for name in want[2]:
        np.testing.assert_allclose(got[2][name], want[2][name], **TOL, err_msg=name)
    for g, w in zip(got[3], want[3]):
        np.testing.assert_allclose(g, w, **TOL)


def test_fully_masked_rows_match_torch() -> None:
    """NaN in the need_weights path (a plain softmax), zeros through SDPA, as torch."""
    t = torch.nn.MultiheadAttention(8, 2)
    m = fparam.from_torch(t)
    x = np.random.default_rng(3).standard_normal((3, 2, 8)).astype(np.float32)
    kpm = np.zeros((2, 3), bool)
    kpm[1] = True
    # Default XLA options here: -inf handling under the optimised compile.
    got = jax.jit(
        lambda m, x, kpm: [m(x, x, x, kpm, need) for need in (True, False)],
    )(m, x, kpm)
    for need, (out, weights) in zip((True, False), got):
        want, want_w = t(_t(x), _t(x), _t(x), key_padding_mask=_t(kpm), need_weights=need)
        np.testing.assert_allclose(out, want.detach().numpy(), **TOL)
        assert np.isnan(np.asarray(out)).any() == need
        if need:
            np.testing.assert_allclose(weights, want_w.detach().numpy(), **TOL)


def test_parameters_state_dict_repr_and_init() -> None:
    for kw in (
        dict(),
        dict(bias=False),
        dict(add_bias_kv=True, kdim=5, vdim=3),
        dict(kdim=8, vdim=3, bias=False, add_bias_kv=True),
    ):
        t = torch.nn.MultiheadAttention(8, 2, **kw)
        m = nn.MultiheadAttention(8, 2, **kw, key=jax.random.key(0))
        assert repr(m) == repr(t)
        assert [(n, p.shape) for n, p in m.named_parameters()] == [
            (n, tuple(p.shape)) for n, p in t.named_parameters()
        ]
        assert list(m.state_dict()) == list(t.state_dict())
        assert list(m._parameters) == list(t._parameters)
        m.load_state_dict(t.state_dict())
        for name, value in t.state_dict().items():
            np.testing.assert_array_equal(m.state_dict()[name], value.numpy())
    # torch's initial distributions, on a larger layer.
    m = nn.MultiheadAttention(64, 4, add_bias_kv=True, kdim=32, key=jax.random.key(1))
    bound = math.sqrt(6 / (64 + 32))
    k = np.asarray(m.k_proj_weight)
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
    assert np.abs(np.asarray(m.q_proj_weight)).max() <= math.sqrt(6 / 128)
    assert not np.any(np.asarray(m.in_proj_bias)) and not np.any(np.asarray(m.out_proj.bias))
    assert np.abs(np.asarray(m.out_proj.weight)).max() <= 1 / 8  # Linear's default, kept
    bias_kv = np.concatenate([np.asarray(m.bias_k).ravel(), np.asarray(m.bias_v).ravel()])
    assert abs(bias_kv.std() - math.sqrt(2 / (64 + 64))) < 0.03
    assert m.bias_k.shape == (1, 1, 64) and m.in_proj_weight is None
    # The same key, the same layer.
    again = nn.MultiheadAttention(64, 4, add_bias_kv=True, kdim=32, key=jax.random.key(1))
    for (n, a), (_, b) in zip(m.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=n)
    # torch's _reset_parameters: new in-projection and bias_k/v draws, zero biases, and
    # out_proj.weight left as it is.
    params = dict(m.named_parameters())
    m._reset_parameters(key=jax.random.key(2))
    after = dict(m.named_parameters())
    for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v"):
        assert not np.allclose(after[name], params[name]), name
    np.testing.assert_array_equal(after["out_proj.weight"], params["out_proj.weight"])
    assert not np.any(np.asarray(after["in_proj_bias"]))


def test_from_torch_twin() -> None:
    torch.manual_seed(0)
    for kw in (dict(batch_first=True), dict(add_bias_kv=True, kdim=5, vdim=3, bias=False)):
        t = torch.nn.Sequential(torch.nn.MultiheadAttention(8, 2, **kw))
        twin = fparam.from_torch(t)
        assert repr(twin) == repr(t)
        rng = np.random.default_rng(0)
        n, L, S = 2, 3, 4
        lead_q, lead_k = ((n, L), (n, S)) if kw.get("batch_first") else ((L, n), (S, n))
        q = rng.standard_normal((*lead_q, 8)).astype(np.float32)
        k = rng.standard_normal((*lead_k, kw.get("kdim", 8))).astype(np.float32)
        v = rng.standard_normal((*lead_k, kw.get("vdim", 8))).astype(np.float32)
        want = t[0](_t(q), _t(k), _t(v))
        got = _jit(lambda m, q, k, v: m[0](q, k, v))(twin, q, k, v)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.detach().numpy(), **TOL)


def test_vmap_and_checkpoint() -> None:
    m = nn.MultiheadAttention(8, 2, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 4, 8))  # (N, L, E): vmap over N, unbatched
    kpm = np.array([[False] * 4, [False, False, True, True], [False, True, False, True]])
    xs = jnp.swapaxes(x, 0, 1)
    (out, w), (want_out, want_w) = _jit(
        lambda m, x, xs: (
            jax.vmap(lambda x, p: m(x, x, x, key_padding_mask=p))(x, kpm),
            m(xs, xs, xs, key_padding_mask=kpm),
        )
    )(m, x, xs)
    np.testing.assert_allclose(out, jnp.swapaxes(want_out, 0, 1), **TOL)
    np.testing.assert_allclose(w, want_w, **TOL)

    def layer(m, x):
        return m(x, x, x, need_weights=False)[0]

    def loss(m, x, remat):
        return jnp.sum(jnp.tanh((jax.checkpoint(layer) if remat else layer)(m, x)))

    assert "remat" in str(jax.make_jaxpr(lambda m, x: jax.grad(loss)(m, x, True))(m, xs))
    plain, remat = _jit(lambda m, x: (jax.grad(loss)(m, x, False), jax.grad(loss)(m, x, True)))(
        m, xs
    )
    for (n, a), (_, b) in zip(plain.named_parameters(), remat.named_parameters()):
        np.testing.assert_allclose(a, b, **TOL, err_msg=n)


def test_dropout_keys_and_modes() -> None:
    m = nn.MultiheadAttention(8, 2, dropout=0.5, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 2, 8))

    @_jit
    def step(m, x, key):
        with fparam.rng(key):
            return m(x, x, x, average_attn_weights=False), m(x, x, x, need_weights=False)

    a, b = step(m, x, jax.random.key(3)), step(m, x, jax.random.key(3))
    c = step(m, x, jax.random.key(4))
    for i in range(2):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        assert not np.allclose(a[i][0], c[i][0])
    # Eval mode: no dropout and no key needed under jit; torch's output.
    m.eval()
    clean, clean_sdpa = _jit(
        lambda m, x: (m(x, x, x, average_attn_weights=False), m(x, x, x, need_weights=False))
    )(m, x)
    t = torch.nn.MultiheadAttention(8, 2, dropout=0.5).eval()
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    want = t(_t(x), _t(x), _t(x))
    np.testing.assert_allclose(clean[0], want[0].detach().numpy(), **TOL)
    np.testing.assert_allclose(clean_sdpa[0], want[0].detach().numpy(), **TOL)
    # Training mode: torch's formula, dropout of the softmax weights with the scope's first key
    # (both branches drop, each with its draw).
    keep = jax.random.bernoulli(jax.random.fold_in(jax.random.key(3), 0), 0.5, (4, 4, 4))
    dropped = keep.reshape(2, 2, 4, 4).astype(jnp.float32) * clean[1] * 2
    np.testing.assert_allclose(a[0][1], dropped, **TOL)
    assert a[1][1] is None and not np.allclose(a[1][0], clean_sdpa[0])
    m.train()
    with pytest.raises(fparam.RandomnessError, match="MultiheadAttention"):
        _jit(lambda m, x: m(x, x, x))(m, x)


def test_functional_separate_weights_and_static_kv() -> None:
    """F.multi_head_attention_forward's own arguments: use_separate_proj_weight, static_k/v."""
    rng = np.random.default_rng(5)
    E, H, L, S, N = 8, 2, 3, 4, 2

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    q, k, v = r(L, N, E), r(S, N, 5), r(S, N, 3)
    weights = dict(q_proj_weight=r(E, E), k_proj_weight=r(E, 5), v_proj_weight=r(E, 3))
    in_bias, out_w, out_b = r(3 * E), r(E, E), r(E)
    static_k, static_v = r(N * H, 6, E // H), r(N * H, 6, E // H)
    cot = r(L, N, E)

    def call(fn, q, static_k, need, **extra):
        return fn(
            q, k, v, E, H, None, in_bias, None, None, False, 0.0, out_w, out_b,
            training=False, need_weights=need, use_separate_proj_weight=True,
            static_k=static_k, static_v=static_v, **weights, **extra,
        )  # fmt: skip

    @_jit
    def ours(q, static_k):
        results = []
        for need in (True, False):
            (out, w), vjp = jax.vjp(
                lambda q, sk, need=need: call(F.multi_head_attention_forward, q, sk, need),
                q,
                static_k,
            )
            results.append((out, w, *vjp((cot, None if w is None else jnp.ones_like(w)))))
        return results

    for need, got in zip((True, False), ours(q, static_k)):
        tq, tk = _t(q, True), _t(static_k, True)
        tweights = {n: _t(w) for n, w in weights.items()}
        out, w = torch.nn.functional.multi_head_attention_forward(
            tq, _t(k), _t(v), E, H, None, _t(in_bias), None, None, False, 0.0, _t(out_w),
            _t(out_b), training=False, need_weights=need, use_separate_proj_weight=True,
            static_k=tk, static_v=_t(static_v), **tweights,
        )  # fmt: skip
        loss = (out * _t(cot)).sum() + (0 if w is None else w.sum())
        loss.backward()
        want = [out, w, tq.grad, tk.grad]
        for g, w_ in zip(got, want):
            assert (g is None) == (w_ is None)
            if w_ is not None:
                np.testing.assert_allclose(g, w_.detach().numpy(), **TOL)
    with pytest.raises(AssertionError, match="static_k"):
        call(F.multi_head_attention_forward, q, static_k[:, :, :3], True)
    with pytest.raises(ValueError, match="implementation"):
        F.scaled_dot_product_attention(q, q, q, implementation="flash")
    # torch's positional parameters stop at is_causal; scale and enable_gqa are keywords.
    with pytest.raises(TypeError):
        torch.nn.functional.scaled_dot_product_attention(_t(q), _t(q), _t(q), None, 0.0, False, 1.0)
    with pytest.raises(TypeError):
        F.scaled_dot_product_attention(q, q, q, None, 0.0, False, 1.0)


MHA_ERRORS = [
    ("query rank", dict(q=(8,)), AssertionError, "query"),
    ("key rank", dict(k=(4, 8)), AssertionError, "key"),
    ("kpm rank", dict(kpm=np.zeros((2, 4, 1), bool)), AssertionError, "key_padding_mask"),
    ("kpm shape", dict(kpm=np.zeros((2, 3), bool)), AssertionError, "key_padded_mask"),
    ("mask rank", dict(mask=np.zeros((1, 2, 3, 4), bool)), AssertionError, "attn_mask"),
    ("mask 2d", dict(mask=np.zeros((3, 3), bool)), RuntimeError, "attn_mask"),
    ("mask 3d", dict(mask=np.zeros((3, 3, 4), bool)), RuntimeError, "attn_mask"),
    ("mask dtype", dict(mask=np.zeros((3, 4), np.int32)), AssertionError, "attn_mask"),
    ("embed", dict(q=(3, 2, 6)), AssertionError, "embedding dimension"),
    ("kv shapes", dict(v=(5, 2, 8)), AssertionError, "value"),
    ("causal without mask", dict(causal=True), RuntimeError, "attn_mask"),
]  # fmt: skip


@pytest.mark.parametrize("case", MHA_ERRORS, ids=[c[0] for c in MHA_ERRORS])
def test_mha_errors_are_torchs(case: Any) -> None:
    _, spec, error, words = case
    t = torch.nn.MultiheadAttention(8, 2)
    m = fparam.from_torch(t)
    shapes = {"q": (3, 2, 8), "k": (4, 2, 8), "v": (4, 2, 8)}
    shapes.update({n: spec[n] for n in ("q", "k", "v") if n in spec})
    q, k, v = (np.ones(shapes[n], np.float32) for n in ("q", "k", "v"))
    kpm, mask = spec.get("kpm"), spec.get("mask")
    causal = spec.get("causal", False)
    with pytest.raises(error):
        t(
            _t(q), _t(k), _t(v),
            key_padding_mask=None if kpm is None else _t(kpm),
            attn_mask=None if mask is None else _t(mask),
            is_causal=causal,
        )  # fmt: skip
    with pytest.raises(error, match=words):
        m(q, k, v, key_padding_mask=kpm, attn_mask=mask, is_causal=causal)


def test_constructor_errors_are_torchs() -> None:
    for args, error in (((0, 2), ValueError), ((8, -1), ValueError), ((8, 3), AssertionError)):
        with pytest.raises(error):
            torch.nn.MultiheadAttention(*args)
        with pytest.raises(error, match="embed_dim"):
            nn.MultiheadAttention(*args)
    with pytest.raises(TypeError, match="embed_dim"):
        nn.MultiheadAttention(8.0, 2)
