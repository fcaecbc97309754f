"""``nn.utils``: gradient clipping and parameter/vector conversion against torch.nn.utils."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn
from fparam.nn import utils

SHAPES = [(3, 4), (5,), (2, 3, 2), ()]


def _grads_and_torch(seed: int, scale: float) -> tuple[list[np.ndarray], list[torch.nn.Parameter]]:
    rng = np.random.default_rng(seed)
    grads = [np.asarray(rng.normal(size=s) * scale, np.float32) for s in SHAPES]
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(g.shape))
        p.grad = torch.from_numpy(g.copy())
        params.append(p)
    return grads, params


# A sampled grid: norm types, and max_norm below and above the total (clip and no clip).
GRID = [
    (seed, norm_type, max_norm, scale)
    for seed, (norm_type, max_norm, scale) in enumerate(
        [
            (2.0, 1.0, 1.0),
            (2.0, 100.0, 1.0),
            (1.0, 0.5, 3.0),
            (math.inf, 0.3, 1.0),
            (math.inf, 10.0, 1.0),
            (3.5, 0.7, 2.0),
            (0.5, 2.0, 0.1),
            (2, 1e-3, 1e3),
        ]
    )
]


@pytest.mark.parametrize(("seed", "norm_type", "max_norm", "scale"), GRID)
def test_clip_grad_norm_matches_torch(seed: int, norm_type: float, max_norm: float, scale: float):
    grads, params = _grads_and_torch(seed, scale)
    want_norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    # A dict with a None entry: fparam.grad's frozen parameters pass through.
    tree = {f"g{i}": jnp.asarray(g) for i, g in enumerate(grads)} | {"frozen": None}
    for fn in (utils.clip_grad_norm_, jax.jit(utils.clip_grad_norm_, static_argnums=(1, 2))):
        clipped, total = fn(tree, max_norm, norm_type)
        assert clipped["frozen"] is None
        np.testing.assert_allclose(float(total), float(want_norm), rtol=2e-6)
        for i, p in enumerate(params):
            np.testing.assert_allclose(clipped[f"g{i}"], p.grad.numpy(), rtol=2e-6, atol=1e-7)
    # get_total_norm alone, and clip_grads_with_norm_ with a given norm.
    np.testing.assert_allclose(
        float(utils.get_total_norm(tree, norm_type)), float(want_norm), rtol=2e-6
    )


def test_clip_on_a_module_gradient_from_fparam_grad() -> None:
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)
    )
    tmodel[0].bias.requires_grad_(False)
    model = fparam.from_torch(tmodel)
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)

    def loss_fn(m: Any, x: Any) -> Any:
        return jnp.sum(m(x) ** 2)

    grads = fparam.grad(loss_fn)(model, jnp.asarray(x))
    clipped, total = jax.jit(lambda g: utils.clip_grad_norm_(g, 0.5))(grads)
    tloss = (tmodel(torch.from_numpy(x)) ** 2).sum()
    tloss.backward()
    want = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.5)
    np.testing.assert_allclose(float(total), float(want), rtol=1e-5)
    got = dict(clipped.named_parameters()) if hasattr(clipped, "named_parameters") else {}
    for name, p in tmodel.named_parameters():
        ours = clipped.get_parameter(name) if p.grad is not None else None
        if p.grad is None:
            assert got.get(name) is None or clipped.get_parameter(name) is None
        else:
            np.testing.assert_allclose(np.asarray(ours), p.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_value_matches_torch() -> None:
    grads, params = _grads_and_torch(3, 2.0)
    torch.nn.utils.clip_grad_value_(params, 0.8)
    clipped = jax.jit(lambda g: utils.clip_grad_value_(g, 0.8))([jnp.asarray(g) for g in grads])
    for c, p in zip(clipped, params):
        np.testing.assert_array_equal(np.asarray(c), p.grad.numpy())


def test_low_precision_gradients_keep_their_dtype() -> None:
    g = jnp.asarray(np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4), jnp.bfloat16)
    p = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.bfloat16))
    p.grad = torch.from_numpy(np.asarray(g, np.float32)).to(torch.bfloat16)
    want = torch.nn.utils.clip_grad_norm_([p], 1.0)
    clipped, total = utils.clip_grad_norm_(g, 1.0)
    assert clipped.dtype == jnp.bfloat16 and total.dtype == jnp.bfloat16
    np.testing.assert_allclose(float(total), float(want), rtol=1e-2)
    np.testing.assert_allclose(
        np.asarray(clipped, np.float32), p.grad.float().numpy(), rtol=1e-2, atol=1e-3
    )


def test_no_gradients_give_a_zero_norm_like_torch() -> None:
    assert float(torch.nn.utils.get_total_norm([])) == float(utils.get_total_norm([None])) == 0.0
    clipped, total = utils.clip_grad_norm_({"a": None}, 1.0)
    assert clipped == {"a": None} and float(total) == 0.0


def test_nonfinite_norm_raises_eagerly_and_under_jit() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1.0, float("inf")])
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    g = [jnp.asarray([1.0, jnp.inf])]
    with pytest.raises(RuntimeError) as ours:
        utils.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
    assert str(ours.value) == str(theirs.value)
    step = jax.jit(lambda g: utils.clip_grad_norm_(g, 1.0, error_if_nonfinite=True))
    with pytest.raises(Exception, match="is non-finite, so it cannot be clipped"):
        jax.block_until_ready(step(g))
    finite = step([jnp.asarray([3.0, 4.0])])  # the same compiled step passes a finite norm
    assert float(finite[1]) == 5.0
    # Without the flag, torch scales by the non-finite norm: so does fparam.
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    np.testing.assert_array_equal(np.asarray(utils.clip_grad_norm_(g, 1.0)[0][0]), p.grad.numpy())


def test_parameter_handles_get_a_pointed_error() -> None:
    model = nn.Linear(2, 3)
    with pytest.raises(TypeError, match=r"fparam keeps no `\.grad`"):
        utils.clip_grad_norm_(model.parameters(), 1.0)
    with pytest.raises(TypeError, match=r"fparam keeps no `\.grad`"):
        utils.clip_grad_value_(list(model.parameters()), 1.0)
    with pytest.raises(TypeError, match="pytree of gradient arrays"):
        utils.clip_grad_norm_(["x"], 1.0)


def test_parameters_to_vector_and_back_match_torch() -> None:
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Linear(4, 2)
    )
    tmodel[2].weight.requires_grad_(False)
    model = fparam.from_torch(tmodel)
    want = torch.nn.utils.parameters_to_vector(tmodel.parameters()).detach().numpy()
    np.testing.assert_array_equal(utils.parameters_to_vector(model.parameters()), want)
    np.testing.assert_array_equal(
        jax.jit(lambda m: utils.parameters_to_vector(m.parameters()))(model), want
    )
    new = np.arange(want.size, dtype=np.float32)
    torch.nn.utils.vector_to_parameters(torch.from_numpy(new), tmodel.parameters())
    # In place through the handles (top level), as torch.
    assert utils.vector_to_parameters(jnp.asarray(new), model.parameters()) is None
    for name, p in tmodel.named_parameters():
        np.testing.assert_array_equal(np.asarray(model.get_parameter(name)), p.detach().numpy())
    # Inside jit: the module form returns a new module.
    out = jax.jit(lambda v, m: utils.vector_to_parameters(v, m))(
        jnp.asarray(new[::-1].copy()), model
    )
    assert isinstance(out, nn.Sequential)
    np.testing.assert_array_equal(utils.parameters_to_vector(out.parameters()), new[::-1])
    assert not out[2].get_parameter("weight").requires_grad  # flags kept
    np.testing.assert_array_equal(out[1].running_var, model[1].running_var)  # buffers kept
    with pytest.raises(RuntimeError, match="hold 73 elements"):
        utils.vector_to_parameters(jnp.zeros(5), model.parameters())
    np.testing.assert_array_equal(utils.parameters_to_vector(model.parameters()), new)  # unchanged
