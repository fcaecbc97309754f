"""Embedding, EmbeddingBag, F.embedding, F.embedding_bag and F.one_hot against torch.

Outputs, weight gradients (padding_idx rows get none, scale_grad_by_freq), per_sample_weights
gradients and, with max_norm, the weight torch renormalises in place, over randomized
configurations (fixed seeds), under jit; errors compared with torch's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fparam
from fparam import nn
from fparam._state import BufferUpdateError
from fparam.nn import functional as F

# float32 against torch's float32. Lookups are exact; the renormalised rows and the bag means
# differ by rounding (measured maxima 1.2e-7 absolute on values of order 1): 4x margin and more.
TOL = {"rtol": 1e-6, "atol": 1e-6}


def _embedding_config(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    num = int(rng.integers(3, 12))
    return {
        "num": num,
        "dim": int(rng.integers(1, 6)),
        "padding_idx": [None, int(rng.integers(0, num)), -1][seed % 3],
        "max_norm": [None, 1.0, 0.5][(seed // 3) % 3] if seed % 4 else None,
        "norm_type": [2.0, 1.0, 3.0, float("inf"), 2.0][seed % 5],
        "scale_grad_by_freq": bool(seed % 2),
        "shape": [(), (5,), (3, 4), (2, 3, 2)][seed % 4],
    }


@pytest.mark.parametrize("seed", range(8))
def test_embedding_matches_torch_under_jit(seed):
    c = _embedding_config(seed)
    rng = np.random.default_rng(100 + seed)
    t = torch.nn.Embedding(
        c["num"], c["dim"], c["padding_idx"], c["max_norm"], c["norm_type"], c["scale_grad_by_freq"]
    )
    with torch.no_grad():
        t.weight.mul_(1.5)  # norms on both sides of max_norm
    m = nn.Embedding(
        c["num"], c["dim"], c["padding_idx"], c["max_norm"], c["norm_type"], c["scale_grad_by_freq"]
    )
    m.load_state_dict(t.state_dict())
    assert repr(m) == repr(t)
    idx = rng.integers(0, c["num"], c["shape"])
    if idx.size > 1 and c["padding_idx"] is not None:
        idx.reshape(-1)[0] = c["num"] - 1 if c["padding_idx"] == -1 else c["padding_idx"]
    cot = rng.standard_normal((*c["shape"], c["dim"])).astype(np.float32)

    @jax.jit
    def step(model, x, ct):
        def loss(mod):
            out = mod(x)
            return (out * ct).sum(), out

        (_, out), grads = fparam.value_and_grad(loss, has_aux=True)(model)
        return out, grads, model

    out, grads, m = step(m, jnp.asarray(idx), jnp.asarray(cot))
    expected = t(torch.tensor(idx))
    expected.backward(torch.tensor(cot))
    np.testing.assert_allclose(out, expected.detach().numpy(), **TOL)
    np.testing.assert_allclose(grads.weight, t.weight.grad.numpy(), **TOL)
    # max_norm: the weight itself was renormalised, in torch in place, here in the returned model.
    np.testing.assert_allclose(m.weight, t.weight.detach().numpy(), **TOL)
    if c["padding_idx"] is not None:
        assert not np.asarray(grads.weight)[c["padding_idx"]].any()


def test_embedding_init_padding_and_from_pretrained():
    m = nn.Embedding(400, 50, padding_idx=-3, key=jax.random.key(0))
    w = np.asarray(m.weight)
    assert m.padding_idx == 397 and not w[397].any()
    rest = np.delete(w, 397, axis=0)
    # N(0, 1): 20k draws, standard errors 0.007 (mean) and 0.005 (std); 4 of them allowed.
    assert abs(rest.mean()) < 0.03 and abs(rest.std() - 1) < 0.02
    assert m.weight.dtype == jnp.float32
    assert nn.Embedding(4, 2, dtype="bfloat16").weight.dtype == jnp.bfloat16
    pre = np.arange(12, dtype=np.float32).reshape(4, 3)
    frozen = nn.Embedding.from_pretrained(jnp.asarray(pre), padding_idx=1)
    t = torch.nn.Embedding.from_pretrained(torch.tensor(pre), padding_idx=1)
    assert repr(frozen) == repr(t)
    assert [p.requires_grad for p in frozen.parameters()] == [False]
    np.testing.assert_array_equal(frozen.weight, pre)  # the padding row is kept, as torch
    trainable = nn.Embedding.from_pretrained(pre, freeze=False)
    assert [p.requires_grad for p in trainable.parameters()] == [True]
    g = fparam.grad(lambda mod: mod(jnp.array([1, 2])).sum())(frozen)
    assert g.weight is None
    m.reset_parameters(jax.random.key(1))
    assert not np.asarray(m.weight)[397].any() and not np.allclose(m.weight, w)


def test_max_norm_eagerly_renormalises_in_place_and_raises_where_the_update_would_be_lost():
    t = torch.nn.Embedding(6, 3, max_norm=1.0)
    m = nn.Embedding(6, 3, max_norm=1.0)
    m.load_state_dict(t.state_dict())
    idx = np.array([0, 2, 2, 5])
    np.testing.assert_allclose(m(jnp.asarray(idx)), t(torch.tensor(idx)).detach().numpy(), **TOL)
    np.testing.assert_allclose(m.weight, t.weight.detach().numpy(), **TOL)  # in place
    norms = np.linalg.norm(np.asarray(m.weight), axis=1)
    assert (norms[idx] <= 1.0 + 1e-6).all() and (norms[[1, 3, 4]] > 1.0).any()
    # The functional form on a module's parameter does the same, eagerly (torch's in-place).
    m2 = nn.Embedding(6, 3, max_norm=None)
    m2.load_state_dict(t.state_dict())
    F.embedding(jnp.array([1, 3]), m2.weight, max_norm=0.1)
    assert np.allclose(np.linalg.norm(np.asarray(m2.weight)[[1, 3]], axis=1), 0.1, atol=1e-6)
    with pytest.raises(BufferUpdateError, match=r"max_norm=1\.0.*fparam\.value_and_grad"):
        jax.jit(lambda mod, x: mod(x))(m, jnp.asarray(idx))
    with pytest.raises(BufferUpdateError, match="max_norm"):
        jax.grad(lambda mod: mod(jnp.asarray(idx)).sum())(m)

    @jax.jit
    def forward(mod, x):
        out = fparam.stateful(lambda mm: mm(x))(mod)
        return out, mod

    fresh = nn.Embedding(6, 3, max_norm=0.2)
    out, fresh = forward(fresh, jnp.asarray(idx))
    assert (np.linalg.norm(np.asarray(fresh.weight)[idx], axis=1) <= 0.2 + 1e-6).all()
    np.testing.assert_array_equal(out, np.asarray(fresh.weight)[idx])
    # Without max_norm nothing changes, so a plain jit forward is fine.
    plain = nn.Embedding(6, 3)
    np.testing.assert_array_equal(
        jax.jit(lambda mod, x: mod(x))(plain, jnp.asarray(idx)), plain(idx)
    )


def _bag_config(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    mode = ["sum", "mean", "max"][seed % 3]
    return {
        "num": int(rng.integers(4, 10)),
        "dim": int(rng.integers(1, 5)),
        "mode": mode,
        "padding_idx": [None, 1, -1, None][seed % 4],
        "max_norm": 0.8 if seed % 5 == 2 else None,
        "scale_grad_by_freq": mode != "max" and seed % 2 == 1,
        "flat": seed % 2 == 0,
        "include_last_offset": seed % 4 == 2,
        "psw": mode == "sum" and seed % 4 != 3,
    }


def _torch_bag_by_lookup(t, idx, offsets, tw, c):
    """torch's bag computed as ``F.embedding`` then a reduction per bag.

    The oracle for ``scale_grad_by_freq``: torch 2.13's CPU ``embedding_bag`` backward divides
    the gradient of the i-th distinct index by the count of ``sorted(indices)[i]`` (it indexes
    its counts with the segment number instead of the segment's first position), so for
    ``[5, 0, 0]`` index 5 gets half its gradient. fparam follows the documented rule (the
    inverse frequency of each index, as ``F.embedding`` and torch's ``Embedding`` compute it).
    """
    if c["max_norm"] is not None:
        TF.embedding(torch.tensor(idx), t.weight, max_norm=c["max_norm"])  # renorm, in place
    rows = TF.embedding(torch.tensor(idx), t.weight, scale_grad_by_freq=True)
    flat = idx.reshape(-1)
    rows = rows.reshape(len(flat), -1)
    if c["flat"]:
        ends = list(offsets[1:]) + ([] if c["include_last_offset"] else [len(flat)])
        bags = [list(range(a, b)) for a, b in zip(offsets, ends)]
    else:
        bags = [list(range(i * idx.shape[1], (i + 1) * idx.shape[1])) for i in range(idx.shape[0])]
    pad = None if c["padding_idx"] is None else c["padding_idx"] % c["num"]
    out = []
    for bag in bags:
        bag = [j for j in bag if flat[j] != pad]
        if not bag:
            out.append(torch.zeros(rows.shape[1]))
            continue
        r = rows[bag]
        if tw is not None:
            r = r * tw.reshape(-1)[bag][:, None]
        out.append(r.sum(0) if c["mode"] == "sum" else r.mean(0))
    return torch.stack(out)


def test_torch_cpu_embedding_bag_scale_grad_by_freq_quirk_is_what_the_oracle_avoids():
    """Documents why the grid above computes its scale_grad_by_freq oracle through
    ``F.embedding``: torch's own bag gives index 5 of ``[5, 0, 0]`` the count of index 0."""
    w = torch.ones(6, 1, requires_grad=True)
    TF.embedding_bag(torch.tensor([5, 0, 0]), w, torch.tensor([0]), mode="sum",
                     scale_grad_by_freq=True).sum().backward()  # fmt: skip
    assert w.grad[5].item() == 0.5  # the documented rule gives 1
    g = jax.jit(jax.grad(
        lambda v: F.embedding_bag(jnp.array([5, 0, 0]), v, jnp.array([0]), mode="sum",
                                  scale_grad_by_freq=True).sum()
    ))(jnp.ones((6, 1)))  # fmt: skip
    assert g[5, 0] == 1.0 and g[0, 0] == 1.0


@pytest.mark.parametrize("seed", range(10))
def test_embedding_bag_matches_torch_under_jit(seed):
    c = _bag_config(seed)
    rng = np.random.default_rng(200 + seed)
    kwargs = {
        k: c[k]
        for k in ("max_norm", "scale_grad_by_freq", "mode", "include_last_offset", "padding_idx")
    }
    t = torch.nn.EmbeddingBag(c["num"], c["dim"], **kwargs)
    m = nn.EmbeddingBag(c["num"], c["dim"], **kwargs)
    m.load_state_dict(t.state_dict())
    assert repr(m) == repr(t)
    if c["flat"]:
        idx = rng.integers(0, c["num"], 9)
        # Bags of lengths 2, 0 (empty: zeros), 3, 1, 3.
        offsets = np.array([0, 2, 2, 5, 6] + ([9] if c["include_last_offset"] else []))
    else:
        idx = rng.integers(0, c["num"], (4, 3))
        offsets = None
    if c["padding_idx"] is not None:
        pad = c["padding_idx"] % c["num"]
        idx.reshape(-1)[[0, 1, 4]] = pad  # a bag with padding only, when flat
    psw = rng.standard_normal(idx.shape).astype(np.float32) if c["psw"] else None
    n_bags = (len(offsets) - c["include_last_offset"]) if c["flat"] else 4
    cot = rng.standard_normal((n_bags, c["dim"])).astype(np.float32)

    @jax.jit
    def step(model, x, off, w, ct):
        def loss(mod, w):
            out = mod(x, off, w)
            return (out * ct).sum(), out

        (_, out), grads = fparam.value_and_grad(loss, argnums=(0, 1), has_aux=True)(model, w)
        return out, grads, model

    jw = None if psw is None else jnp.asarray(psw)
    jo = None if offsets is None else jnp.asarray(offsets)
    out, (grads, g_psw), m = step(m, jnp.asarray(idx), jo, jw, jnp.asarray(cot))
    tw = None if psw is None else torch.tensor(psw, requires_grad=True)
    to = None if offsets is None else torch.tensor(offsets)
    if c["scale_grad_by_freq"]:
        expected = _torch_bag_by_lookup(t, idx, offsets, tw, c)
    else:
        expected = t(torch.tensor(idx), to, tw)
    expected.backward(torch.tensor(cot))
    np.testing.assert_allclose(out, expected.detach().numpy(), **TOL)
    np.testing.assert_allclose(grads.weight, t.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(m.weight, t.weight.detach().numpy(), **TOL)
    if psw is not None:
        np.testing.assert_allclose(g_psw, tw.grad.numpy(), **TOL)


def test_functional_embedding_bag_and_embedding_match_torch_eagerly():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((7, 3)).astype(np.float32)
    idx = rng.integers(0, 7, 8)
    off = np.array([0, 3, 3, 7])
    for mode in ("max",):  # the grid covers every mode under jit; here one eagerly
        ours = F.embedding_bag(jnp.asarray(idx), jnp.asarray(w), jnp.asarray(off), mode=mode)
        theirs = TF.embedding_bag(torch.tensor(idx), torch.tensor(w), torch.tensor(off), mode=mode)
        np.testing.assert_allclose(ours, theirs.numpy(), **TOL)
    ours = F.embedding(jnp.asarray(idx.reshape(2, 4)), jnp.asarray(w), padding_idx=2)
    theirs = TF.embedding(torch.tensor(idx.reshape(2, 4)), torch.tensor(w), padding_idx=2)
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_twins_carry_padding_and_max_norm():
    t = torch.nn.Sequential(
        torch.nn.Embedding(9, 4, padding_idx=2, max_norm=1.5, norm_type=1.0),
        torch.nn.Flatten(),
    )
    twin = fparam.from_torch(t)
    assert repr(twin) == repr(t)
    assert twin[0].padding_idx == 2 and twin[0].max_norm == 1.5
    idx = np.array([[2, 3, 3], [8, 0, 2]])
    np.testing.assert_allclose(twin(jnp.asarray(idx)), t(torch.tensor(idx)).detach().numpy(), **TOL)
    np.testing.assert_allclose(twin[0].weight, t[0].weight.detach().numpy(), **TOL)
    bag = torch.nn.EmbeddingBag(9, 4, mode="sum", padding_idx=0, include_last_offset=True)
    bag_twin = fparam.from_torch(bag)
    assert repr(bag_twin) == repr(bag) and bag_twin.include_last_offset
    off = np.array([0, 2, 6])
    inp = np.array([0, 1, 2, 3, 0, 5])
    expected = bag(torch.tensor(inp), torch.tensor(off)).detach().numpy()
    np.testing.assert_allclose(bag_twin(jnp.asarray(inp), jnp.asarray(off)), expected, **TOL)


@pytest.mark.parametrize("num_classes", [-1, 5])
def test_one_hot_matches_torch(num_classes):
    x = np.array([[0, 3], [1, 1], [2, 0]])
    ours = F.one_hot(jnp.asarray(x), num_classes)
    theirs = TF.one_hot(torch.tensor(x), num_classes)
    np.testing.assert_array_equal(ours, theirs.numpy())
    assert jnp.issubdtype(ours.dtype, jnp.integer)
    assert F.one_hot(jnp.zeros((0,), jnp.int32), 3).shape == (0, 3)
    assert jax.jit(lambda v: F.one_hot(v, 4))(jnp.asarray(x)).shape == (3, 2, 4)
    with pytest.raises(RuntimeError, match="pass num_classes"):
        jax.jit(lambda v: F.one_hot(v))(jnp.asarray(x))


def _same_error(ours, theirs):
    with pytest.raises(Exception) as t:
        theirs()
    with pytest.raises(type(t.value)) as o:
        ours()
    # The first line: torch appends the offending tensor's repr to some (offsets[0]).
    expected = str(t.value).splitlines()[0]
    assert str(o.value) == expected, (str(o.value), expected)


def test_bad_arguments_raise_torchs_errors():
    w = np.zeros((5, 2), np.float32)
    jw, tw = jnp.asarray(w), torch.tensor(w)
    i2 = np.array([[0, 1], [2, 3]])
    i1 = np.array([0, 1, 2])
    _same_error(
        lambda: nn.Embedding(5, 2, padding_idx=5), lambda: torch.nn.Embedding(5, 2, padding_idx=5)
    )
    _same_error(
        lambda: nn.Embedding(5, 2, padding_idx=-6), lambda: torch.nn.Embedding(5, 2, padding_idx=-6)
    )
    _same_error(
        lambda: nn.EmbeddingBag(5, 2, padding_idx=7),
        lambda: torch.nn.EmbeddingBag(5, 2, padding_idx=7),
    )
    _same_error(
        lambda: nn.Embedding(4, 2, _weight=jw), lambda: torch.nn.Embedding(4, 2, _weight=tw)
    )
    _same_error(
        lambda: nn.Embedding.from_pretrained(jw[0]),
        lambda: torch.nn.Embedding.from_pretrained(tw[0]),
    )
    _same_error(
        lambda: F.embedding(jnp.array([5]), jw), lambda: TF.embedding(torch.tensor([5]), tw)
    )
    _same_error(
        lambda: F.embedding(jnp.array([0]), jw, padding_idx=9),
        lambda: TF.embedding(torch.tensor([0]), tw, padding_idx=9),
    )
    # torch's message ends with the offsets' type: a jax.Array here, a torch.Tensor there.
    with pytest.raises(ValueError, match="if input is 2D, then offsets has to be None, as input"):
        F.embedding_bag(jnp.asarray(i2), jw, jnp.array([0]))
    _same_error(
        lambda: F.embedding_bag(jnp.asarray(i1), jw), lambda: TF.embedding_bag(torch.tensor(i1), tw)
    )
    _same_error(
        lambda: F.embedding_bag(jnp.asarray(i1), jw, jnp.array([[0]])),
        lambda: TF.embedding_bag(torch.tensor(i1), tw, torch.tensor([[0]])),
    )
    _same_error(
        lambda: F.embedding_bag(jnp.zeros((1, 1, 1), jnp.int32), jw),
        lambda: TF.embedding_bag(torch.zeros((1, 1, 1), dtype=torch.long), tw),
    )
    _same_error(
        lambda: F.embedding_bag(jnp.asarray(i2), jw, mode="min"),
        lambda: TF.embedding_bag(torch.tensor(i2), tw, mode="min"),
    )
    _same_error(
        lambda: F.embedding_bag(jnp.asarray(i2), jw, mode="max", scale_grad_by_freq=True),
        lambda: TF.embedding_bag(torch.tensor(i2), tw, mode="max", scale_grad_by_freq=True),
    )
    _same_error(
        lambda: F.embedding_bag(jnp.asarray(i2), jw, per_sample_weights=jnp.ones((2, 2))),
        lambda: TF.embedding_bag(torch.tensor(i2), tw, per_sample_weights=torch.ones((2, 2))),
    )
    # torch prints the shapes as torch.Size([3]); fparam as the tuple (3,).
    with pytest.raises(ValueError, match=r"If per_sample_weights \(\(3,\)\) is not None, then"):
        F.embedding_bag(jnp.asarray(i2), jw, mode="sum", per_sample_weights=jnp.ones(3))
    _same_error(
        lambda: F.embedding_bag(jnp.asarray(i1), jw, jnp.array([1])),
        lambda: TF.embedding_bag(torch.tensor(i1), tw, torch.tensor([1])),
    )
    _same_error(
        lambda: F.one_hot(jnp.array([1, -1]), 3), lambda: TF.one_hot(torch.tensor([1, -1]), 3)
    )
    _same_error(
        lambda: F.one_hot(jnp.array([1, 3]), 3), lambda: TF.one_hot(torch.tensor([1, 3]), 3)
    )
    _same_error(lambda: F.one_hot(jnp.array([1.0]), 3), lambda: TF.one_hot(torch.tensor([1.0]), 3))
    _same_error(
        lambda: F.one_hot(jnp.zeros((0,), jnp.int32)),
        lambda: TF.one_hot(torch.zeros((0,), dtype=torch.long)),
    )
    with pytest.raises(RuntimeError, match="indices"):
        F.embedding(jnp.array([0.0]), jw)
    with pytest.raises(TypeError, match="num_embeddings"):
        nn.Embedding(4.0, 2)
