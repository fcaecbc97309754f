"""Parity of fparam.nn.functional's losses with torch.nn.functional: values, gradients, errors."""

from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from fparam.nn import functional as F

# Tolerances, float32 against torch's float32, set at ~5-10x the errors measured over every
# comparison in this file (jax 0.10.2, torch 2.13, CPU): values 4.6e-7 relative (where
# |torch| > 1e-2; 3.1e-5 absolute on a 'sum' of ~100) and 9.3e-10 absolute elsewhere; gradients
# 7.0e-6 relative (BCE target gradients of size ~4) and 4.5e-7 absolute on small entries.
VAL = {"rtol": 5e-6, "atol": 1e-7}
GRAD = {"rtol": 5e-5, "atol": 2e-6}

REDUCTIONS = ("none", "mean", "sum")

# input shape, index-target shape: 1-D input with a 0-d target, 2-D, the (100,2,2)/(100,2) seed
# case (2 classes on axis 1), K-dim 3-D, 4-D (nll_loss2d path) and 5-D.
SHAPES = {
    "1d": ((5,), ()),
    "2d": ((6, 5), (6,)),
    "seed3d": ((100, 2, 2), (100, 2)),
    "3d": ((4, 3, 5), (4, 5)),
    "4d": ((2, 3, 4, 5), (2, 4, 5)),
    "5d": ((2, 3, 2, 3, 2), (2, 2, 3, 2)),
}


def _classes(shape: tuple[int, ...]) -> int:
    return shape[0] if len(shape) == 1 else shape[1]


def _torch(a: np.ndarray | None, **kw) -> torch.Tensor | None:
    return None if a is None else torch.tensor(a, **kw)


def _check_against_torch(
    fp_fn, torch_fn, inputs: list[np.ndarray], out_shape, rng, diff=(0,), grad=True
):
    """Compare the value and, if ``grad``, the VJP (w.r.t. ``inputs[i]`` for ``i`` in ``diff``,
    with a random cotangent) with torch autograd.

    Eager JAX VJPs cost ~20 ms each on CPU (forward-only calls ~1 ms), so the big grids check
    every value and a covering subset of the gradients.
    """
    cot = rng.standard_normal(out_shape).astype(np.float32)
    if grad:
        value, vjp = jax.vjp(
            lambda *d: fp_fn(*[d[diff.index(i)] if i in diff else x for i, x in enumerate(inputs)]),
            *[jnp.asarray(inputs[i]) for i in diff],
        )
        grads = vjp(jnp.asarray(cot))
    else:
        value, grads = fp_fn(*inputs), ()
    # torch wants int64 class indices; fparam gets int32 ones (JAX's default).
    tensors = [
        torch.tensor(x.astype(np.int64) if x.dtype.kind == "i" else np.array(x, order="C"))
        for x in inputs
    ]
    for i in diff:
        tensors[i].requires_grad_(grad)
    expected = torch_fn(*tensors)
    if grad:
        expected.backward(torch.tensor(cot))
    np.testing.assert_allclose(np.asarray(value), expected.detach().numpy(), **VAL)
    assert value.shape == tuple(expected.shape)
    assert value.dtype == jnp.float32
    for i, g in zip(diff, grads):
        np.testing.assert_allclose(np.asarray(g), tensors[i].grad.numpy(), **GRAD)


# --------------------------------------------------------------------------------------------
# cross_entropy / nll_loss: index targets over the full grid


@pytest.mark.parametrize("shape_name", ["1d", "2d", "seed3d", "4d", "5d"])
def test_cross_entropy_index_targets_grid(shape_name):
    """reductions × weight × ignore_index (default, in-range, out-of-range) × label smoothing.

    Every value is checked; gradients for every 'none' case, and for 'mean'/'sum' with the
    in-range ``ignore_index=1`` on the 1-D (class axis 0), 2-D and 3-D seed shapes (the maths has
    no other per-rank branch; eager VJPs on new shapes cost compile time).
    """
    rng = np.random.default_rng(list(SHAPES).index(shape_name))
    grad_shapes = ("1d", "2d", "seed3d")
    x_shape, y_shape = SHAPES[shape_name]
    c = _classes(x_shape)
    for weighted, ignore_index, smoothing, reduction in itertools.product(
        (False, True), (-100, 1, 7), (0.0, 0.2), REDUCTIONS
    ):
        x = (2 * rng.standard_normal(x_shape)).astype(np.float32)
        y = rng.integers(0, c, y_shape)
        y = np.where(rng.random(y_shape) < 0.25, ignore_index, y)
        w = rng.uniform(0.2, 2.0, c).astype(np.float32) if weighted else None
        kw = {"ignore_index": ignore_index, "reduction": reduction, "label_smoothing": smoothing}
        _check_against_torch(
            lambda x, y, w=w, kw=kw: F.cross_entropy(x, y, w, **kw),
            lambda x, y, w=w, kw=kw: TF.cross_entropy(x, y, _torch(w), **kw),
            [x, y.astype(np.int32)],
            y_shape if reduction == "none" else (),
            rng,
            grad=reduction == "none" or (ignore_index == 1 and shape_name in grad_shapes),
        )


@pytest.mark.parametrize("shape_name", ["1d", "2d", "4d"])
def test_nll_loss_grid(shape_name):
    rng = np.random.default_rng(10 + list(SHAPES).index(shape_name))
    x_shape, y_shape = SHAPES[shape_name]
    c = _classes(x_shape)
    for weighted, ignore_index, reduction in itertools.product(
        (False, True), (-100, 1, 7), REDUCTIONS
    ):
        x = np.log(rng.dirichlet(np.ones(c), size=y_shape))  # log-probabilities, classes last
        x = np.moveaxis(x, -1, 0 if len(x_shape) == 1 else 1).astype(np.float32)
        y = rng.integers(0, c, y_shape)
        y = np.where(rng.random(y_shape) < 0.25, ignore_index, y)
        w = rng.uniform(0.2, 2.0, c).astype(np.float32) if weighted else None
        kw = {"ignore_index": ignore_index, "reduction": reduction}
        _check_against_torch(
            lambda x, y, w=w, kw=kw: F.nll_loss(x, y, w, **kw),
            lambda x, y, w=w, kw=kw: TF.nll_loss(x, y, _torch(w), **kw),
            [x, y.astype(np.int32)],
            y_shape if reduction == "none" else (),
            rng,
            grad=ignore_index == 1,
        )


# --------------------------------------------------------------------------------------------
# cross_entropy: probability targets


@pytest.mark.parametrize("shape_name", ["1d", "2d", "seed3d", "4d", "5d"])
def test_cross_entropy_probability_targets_grid(shape_name):
    """Equal shapes choose the probability path; gradients w.r.t. logits and targets."""
    rng = np.random.default_rng(20 + list(SHAPES).index(shape_name))
    x_shape, _ = SHAPES[shape_name]
    c = _classes(x_shape)
    class_dim = 0 if len(x_shape) == 1 else 1
    out_shape = x_shape[:class_dim] + x_shape[class_dim + 1 :]
    for weighted, smoothing, reduction in itertools.product(
        (False, True), (0.0, 0.2, 1.0), REDUCTIONS
    ):
        x = (2 * rng.standard_normal(x_shape)).astype(np.float32)
        p = rng.dirichlet(np.ones(c), size=out_shape)  # classes last
        p = np.moveaxis(p, -1, class_dim).astype(np.float32)
        w = rng.uniform(0.2, 2.0, c).astype(np.float32) if weighted else None
        kw = {"reduction": reduction, "label_smoothing": smoothing}
        _check_against_torch(
            lambda x, p, w=w, kw=kw: F.cross_entropy(x, p, w, **kw),
            lambda x, p, w=w, kw=kw: TF.cross_entropy(x, p, _torch(w), **kw),
            [x, p],
            out_shape if reduction == "none" else (),
            rng,
            diff=(0, 1),
            grad=reduction == "none" or smoothing == 0.2,
        )


# --------------------------------------------------------------------------------------------
# Golden values (torch-semantics.md §5.7)

X = np.array([[1, 2, 3], [1, 0, -1], [0.5, 0.5, 0.5], [2, -1, 0]], np.float32)
Y = np.array([2, 0, 1, -100], np.int32)
W = np.array([1, 2, 0.5], np.float32)
P = np.array([[0.1, 0.2, 0.7], [1, 0, 0], [0.3, 0.3, 0.4], [0, 0.5, 0.5]], np.float32)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 0.6379414),
        ({"reduction": "sum"}, 1.9138241),
        ({"reduction": "none"}, [0.4076059, 0.4076059, 1.0986123, 0]),
        ({"weight": W}, 0.8024668),
        ({"weight": W, "reduction": "none"}, [0.2038030, 0.4076059, 2.1972246, 0]),
        ({"label_smoothing": 0.1}, 0.7046080),
        ({"weight": W, "label_smoothing": 0.2}, 0.9028951),
        ({"target": np.array([2, 0, 1, 1], np.int32), "ignore_index": 0}, 1.5586882),
        ({"target": P}, 1.2459176),
        ({"target": P, "weight": W}, 1.5687131),
        ({"target": P, "label_smoothing": 0.1}, 1.2650841),
    ],
)
def test_golden_values(kwargs, expected):
    kwargs = dict(kwargs)
    target = kwargs.pop("target", Y)
    out = F.cross_entropy(X, target, **kwargs)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=2e-6, atol=1e-7)


def test_golden_kdim_and_gradient():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 5
    y = np.array([[0, 2], [1, 1]], np.int32)
    np.testing.assert_allclose(F.cross_entropy(x, y), 1.1512505, rtol=2e-6)
    np.testing.assert_allclose(
        F.cross_entropy(x, y, reduction="none"),
        [[1.5512505, 0.7512505], [1.1512505, 1.1512506]],
        rtol=2e-6,
    )
    # dL/dx = (softmax(x) - onehot(y)) / N for the unweighted mean, over the N counted rows
    # (the "2d" grid shape, so the eager gradient ops are already compiled).
    rng = np.random.default_rng(4)
    x2 = rng.standard_normal((6, 5)).astype(np.float32)
    y2 = np.array([0, 4, -100, 2, 2, 1], np.int32)
    grad = np.asarray(jax.grad(F.cross_entropy)(jnp.asarray(x2), y2))
    expected = (jax.nn.softmax(x2, axis=1) - jax.nn.one_hot(y2, 5)) / 5
    keep = y2 != -100
    np.testing.assert_allclose(grad[keep], np.asarray(expected)[keep], atol=1e-7)
    np.testing.assert_array_equal(grad[~keep], 0)


def test_seed_case_uses_axis_1_as_classes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 2, 2)).astype(np.float32)
    y = rng.integers(0, 2, (100, 2)).astype(np.int32)
    logp = jax.nn.log_softmax(x, axis=1)
    picked = np.take_along_axis(np.asarray(logp), y[:, None, :], axis=1)[:, 0]
    np.testing.assert_allclose(F.cross_entropy(x, y), -picked.mean(), rtol=1e-6)
    assert F.cross_entropy(x, y, reduction="none").shape == (100, 2)


# --------------------------------------------------------------------------------------------
# Special cases


def test_all_ignored_and_empty_batches():
    # The "2d" grid shape, so the eager ops are already compiled.
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    y = np.full((6,), -100, np.int32)
    w5 = np.linspace(0.5, 2.0, 5, dtype=np.float32)
    for smoothing in (0.0, 0.3):
        for w in (None, w5):
            assert np.isnan(F.cross_entropy(x, y, w, label_smoothing=smoothing))
            assert F.cross_entropy(x, y, w, reduction="sum", label_smoothing=smoothing) == 0
            none = F.cross_entropy(x, y, w, reduction="none", label_smoothing=smoothing)
            np.testing.assert_array_equal(none, np.zeros(6))
            # torch's gradient is zero here, not NaN.
            g = jax.grad(lambda x, w=w, s=smoothing: F.cross_entropy(x, y, w, label_smoothing=s))(
                jnp.asarray(x)
            )
            np.testing.assert_array_equal(g, np.zeros((6, 5)))
    empty = np.zeros((0, 5), np.float32)
    assert np.isnan(F.cross_entropy(empty, np.zeros((0,), np.int32)))
    assert F.cross_entropy(empty, np.zeros((0,), np.int32), reduction="sum") == 0
    assert np.isnan(F.cross_entropy(empty, empty))
    assert np.isnan(F.cross_entropy(np.zeros((0, 3, 5), np.float32), np.zeros((0, 5), np.int32)))


def test_one_d_input_with_one_element_target():
    x = np.array([0.3, -1.0, 2.0], np.float32)
    out = F.cross_entropy(x, np.array([1], np.int32), reduction="none")
    expected = TF.cross_entropy(torch.tensor(x), torch.tensor([1]), reduction="none")
    assert out.shape == tuple(expected.shape) == ()
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16])
def test_integer_label_dtypes_accepted(dtype):
    # torch accepts only int64/uint8; fparam accepts any integer dtype (int32 is JAX's default).
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    y = np.array([0, 2, 1, 1])
    expected = TF.cross_entropy(torch.tensor(x), torch.tensor(y)).item()
    np.testing.assert_allclose(F.cross_entropy(x, y.astype(dtype)), expected, rtol=1e-6)


def test_ignore_index_beyond_int32_range():
    y = np.array([0, 2, 1, 1], np.int32)
    expected = TF.cross_entropy(torch.tensor(X), torch.tensor(y).long(), ignore_index=2**40)
    np.testing.assert_allclose(
        F.cross_entropy(X, y, ignore_index=2**40), expected.item(), rtol=1e-6
    )


def test_out_of_range_targets_concrete_raise():
    for y in ([0, 3, 2, 1], [0, -1, 5, 1]):
        with pytest.raises(IndexError) as theirs:
            TF.cross_entropy(torch.tensor(X), torch.tensor(y))
        with pytest.raises(IndexError) as ours:
            F.cross_entropy(X, np.array(y, np.int32))
        assert str(ours.value) == str(theirs.value)
        with pytest.raises(IndexError, match="out of bounds"):
            F.nll_loss(X, np.array(y, np.int32))
    # An out-of-range value equal to ignore_index is fine (torch too).
    F.cross_entropy(X, np.array([0, 7, 2, 1], np.int32), ignore_index=7)
    # Also checked under jax.grad, where the (non-differentiated) target stays concrete.
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        jax.grad(F.cross_entropy)(jnp.asarray(X), np.array([0, 3, 2, 1], np.int32))


def test_out_of_range_targets_under_jit_give_nan():
    """Documented behaviour: NaN loss for that element; the gradient treats it as ignored."""
    y_bad = jnp.array([2, 5, -1, 0], jnp.int32)
    y_ign = jnp.array([2, -100, -100, 0], jnp.int32)
    for smoothing, w in [(0.0, None), (0.2, jnp.asarray(W))]:

        @jax.jit
        def run(x, y, w=w, smoothing=smoothing):
            def loss(x, reduction):
                return F.cross_entropy(x, y, w, reduction=reduction, label_smoothing=smoothing)

            mean, g_mean = jax.value_and_grad(loss)(x, "mean")
            total, g_sum = jax.value_and_grad(loss)(x, "sum")
            return loss(x, "none"), mean, total, g_mean, g_sum

        bad, ignored = run(jnp.asarray(X), y_bad), run(jnp.asarray(X), y_ign)
        none = np.asarray(bad[0])
        assert np.isnan(none[1]) and np.isnan(none[2])
        np.testing.assert_allclose(none[[0, 3]], np.asarray(ignored[0])[[0, 3]], rtol=1e-6)
        assert np.isnan(bad[1]) and np.isnan(bad[2])
        np.testing.assert_allclose(bad[3], ignored[3], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bad[4], ignored[4], rtol=1e-6, atol=1e-7)


def test_jit_matches_eager_and_traced_label_smoothing():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    y = rng.integers(0, 3, (4, 5)).astype(np.int32)

    @jax.jit
    def both(x, y, e):
        return F.cross_entropy(x, y, label_smoothing=0.25), F.cross_entropy(x, y, label_smoothing=e)

    static_eps, traced_eps = both(x, y, jnp.float32(0.25))
    eager = F.cross_entropy(x, y, label_smoothing=0.25)
    np.testing.assert_allclose(static_eps, eager, rtol=1e-6)
    np.testing.assert_allclose(traced_eps, eager, rtol=1e-6)
    _, traced_zero = both(x, y, jnp.float32(0.0))  # a traced 0 equals the plain path
    np.testing.assert_allclose(traced_zero, F.cross_entropy(x, y), rtol=1e-6)
    batched = jax.vmap(F.cross_entropy)(x.transpose(0, 2, 1), y)
    np.testing.assert_allclose(
        batched, F.cross_entropy(x, y, reduction="none").mean(axis=1), rtol=1e-6
    )


def test_float64_input_keeps_dtype():
    with jax.enable_x64(True):
        x = jnp.asarray(X, jnp.float64)
        assert F.cross_entropy(x, Y).dtype == jnp.float64
        assert F.mse_loss(x, x).dtype == jnp.float64


# --------------------------------------------------------------------------------------------
# Error catalogue (§5.6): same exception type as torch, key message substring


def _r(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _long(*shape):
    return np.zeros(shape, np.int64)


CE_ERRORS = [
    # (id, input, target, kwargs, exception, substring)
    ("batch", _r(3, 2), _long(2), {}, ValueError, "Expected input batch_size (3) to match target batch_size (2)."),
    ("batch0d", _r(3, 2), _long(), {}, ValueError, "Expected input batch_size (3) to match target batch_size (0)."),
    ("kdim", _r(4, 2, 3), _long(4, 2), {}, RuntimeError, "Expected target size [4, 3], got [4, 2]"),
    ("kdim_rank", _r(4, 2, 3), _long(4), {}, RuntimeError, "Expected target size [4, 3], got [4]"),
    ("5d", _r(4, 2, 3, 3, 2), _long(4, 3, 3, 3), {}, RuntimeError, "Expected target size [4, 3, 3, 2], got [4, 3, 3, 3]"),
    ("4d", _r(4, 2, 3, 3), _long(4, 2, 3), {}, RuntimeError, "size mismatch (got input: [4, 2, 3, 3] , target: [4, 2, 3]"),
    ("4d_rank", _r(4, 2, 3, 3), _long(4, 3), {}, RuntimeError, "only batches of spatial targets supported (3D tensors) but got targets of dimension: 2"),
    ("multi", _r(3, 2), _long(3, 1), {}, RuntimeError, "0D or 1D target tensor expected, multi-target not supported"),
    ("multi1d", _r(3), _long(1, 1), {}, RuntimeError, "0D or 1D target tensor expected, multi-target not supported"),
    ("1d_size", _r(3), _long(2), {}, ValueError, "For 1D input, 1D target must have size 1, but got target size: 2"),
    ("weight", _r(3, 2), _long(3), {"weight": _r(3)}, RuntimeError, "weight tensor should be defined either for all 2 classes or no classes but got weight tensor of shape: [3]"),
    ("weight_2d", _r(3, 2), _long(3), {"weight": _r(1, 2)}, RuntimeError, "weight tensor should be defined either for all 2 classes or no classes but got weight tensor of shape: [1, 2]"),
    ("weight_kdim", _r(4, 2, 3), _long(4, 3), {"weight": _r(3)}, RuntimeError, "weight tensor should be defined either for all or no classes"),
    ("weight_4d", _r(4, 2, 3, 3), _long(4, 3, 3), {"weight": _r(3)}, RuntimeError, "weight tensor should be defined either for all or no classes"),
    ("weight_prob", _r(3, 2), _r(3, 2), {"weight": _r(3)}, RuntimeError, "cross_entropy: weight tensor should be defined either for all 2 classes or no classes but got weight tensor of shape: [3]"),
    ("0d_long", _r(), _long(), {}, RuntimeError, "Expected floating point type for target with class probabilities, got Long"),
    ("0d_int", _r(), np.zeros((), np.int32), {}, RuntimeError, "Expected floating point type for target with class probabilities, got Int"),
    ("0d_float", _r(), _r(), {}, IndexError, "Dimension specified as 1 but tensor has no dimensions"),
    ("0d_input", _r(), _long(2), {}, IndexError, "Dimension out of range"),
    ("float_target", _r(3, 2), np.zeros(3, np.float32), {}, RuntimeError, "but got Float"),
    ("bool_target", _r(3, 2), np.zeros(3, bool), {}, RuntimeError, "but got Bool"),
    ("prob_long", _r(3, 2), _long(3, 2), {}, RuntimeError, "Expected floating point type for target with class probabilities, got Long"),
    ("prob_ignore", _r(3, 2), _r(3, 2), {"ignore_index": 0}, RuntimeError, "ignore_index is not supported for floating point target"),
    ("smoothing", _r(3, 2), _long(3), {"label_smoothing": 1.5}, RuntimeError, "label_smoothing must be between 0.0 and 1.0. Got: 1.5"),
    ("smoothing_prob", _r(3, 2), _r(3, 2), {"label_smoothing": 1.5}, RuntimeError, "label_smoothing must be between 0.0 and 1.0. Got: 1.5"),
    ("reduction", _r(3, 2), _long(3), {"reduction": "avg"}, ValueError, "avg is not a valid value for reduction"),
    ("int_input", np.zeros((3, 2), np.int64), _long(3), {}, NotImplementedError, "not implemented for 'Long'"),
    ("weight_dtype", _r(3, 2), _long(3), {"weight": np.zeros(2, np.int32)}, RuntimeError, "expected scalar type Float but found Int"),
    ("oob", _r(3, 3), np.array([0, 3, 2]), {}, IndexError, "Target 3 is out of bounds."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "exc", "message"),
    [case[1:] for case in CE_ERRORS],
    ids=[case[0] for case in CE_ERRORS],
)
def test_cross_entropy_errors_match_torch(x, y, kwargs, exc, message):
    torch_kwargs = {
        k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()
    }
    with pytest.raises(exc) as theirs:
        TF.cross_entropy(torch.tensor(x), torch.tensor(y), **torch_kwargs)
    assert message in str(theirs.value)
    with pytest.raises(exc) as ours:
        F.cross_entropy(x, y, **kwargs)
    assert message in str(ours.value)
    # Shape, dtype and option errors are raised at trace time, under jit too.
    if exc is not IndexError or "out of bounds" not in message:
        with pytest.raises(exc):
            jax.jit(lambda x, y: F.cross_entropy(x, y, **kwargs))(x, y)


def test_negative_label_smoothing_raises():
    # Divergence: torch silently treats a negative value as 0 (torch-semantics.md §7.6).
    with pytest.raises(RuntimeError, match=r"label_smoothing must be between 0\.0 and 1\.0"):
        F.cross_entropy(X, Y, label_smoothing=-0.1)


NLL_ERRORS = [
    ("0d", _r(), _long(), {}, ValueError, "Expected 1 or more dimensions (got 0)"),
    ("equal_shapes", _r(3, 2), _long(3, 2), {}, RuntimeError, "0D or 1D target tensor expected, multi-target not supported"),
    ("batch", _r(3, 2), _long(2), {}, ValueError, "Expected input batch_size (3) to match target batch_size (2)."),
    ("reduction", _r(3, 2), _long(3), {"reduction": "avg"}, ValueError, "avg is not a valid value for reduction"),
    ("float_target", _r(3, 2), np.zeros(3, np.float32), {}, RuntimeError, "but got Float"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "exc", "message"),
    [case[1:] for case in NLL_ERRORS],
    ids=[case[0] for case in NLL_ERRORS],
)
def test_nll_loss_errors_match_torch(x, y, kwargs, exc, message):
    with pytest.raises(exc) as theirs:
        TF.nll_loss(torch.tensor(x), torch.tensor(y), **kwargs)
    assert message in str(theirs.value)
    with pytest.raises(exc) as ours:
        F.nll_loss(x, y, **kwargs)
    assert message in str(ours.value)


# --------------------------------------------------------------------------------------------
# mse_loss / l1_loss


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_losses_grid(name):
    rng = np.random.default_rng(30)
    for shape, weighted, reduction in itertools.product(
        [(), (6, 5), (2, 3, 4, 5)], (False, True), REDUCTIONS
    ):
        x = rng.standard_normal(shape).astype(np.float32)
        t = rng.standard_normal(shape).astype(np.float32)
        if x.size:
            x.flat[0] = t.flat[0]  # l1's subgradient at 0 is 0 in both
        w = rng.uniform(0.2, 2.0, shape).astype(np.float32) if weighted else None
        _check_against_torch(
            lambda x, t, r=reduction, w=w: getattr(F, name)(x, t, reduction=r, weight=w),
            lambda x, t, r=reduction, w=w: getattr(TF, name)(x, t, reduction=r, weight=_torch(w)),
            [x, t],
            shape if reduction == "none" else (),
            rng,
            diff=(0, 1),
            grad=reduction == "none" or weighted,
        )


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_losses_broadcast_like_torch(name):
    rng = np.random.default_rng(31)
    x = rng.standard_normal((3,)).astype(np.float32)
    t = rng.standard_normal((3, 1)).astype(np.float32)
    with pytest.warns(UserWarning, match="different to the input size"):
        expected = getattr(TF, name)(torch.tensor(x), torch.tensor(t), reduction="none")
    with pytest.warns(UserWarning, match=r"Using a target size \(torch.Size\(\[3, 1\]\)\)"):
        out = getattr(F, name)(x, t, reduction="none")
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-6)
    with (
        pytest.warns(UserWarning, match="different to the input size"),
        pytest.raises(RuntimeError, match="must match the size of tensor b"),
    ):
        getattr(F, name)(x, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"Weights and input must have the same size\."):
        getattr(F, name)(x, x, weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        getattr(F, name)(x, x, reduction="avg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(F, name)(x, x)  # same shapes: no warning
    assert np.isnan(getattr(F, name)(np.zeros(0, np.float32), np.zeros(0, np.float32)))


# --------------------------------------------------------------------------------------------
# binary_cross_entropy / binary_cross_entropy_with_logits


def test_binary_cross_entropy_grid():
    rng = np.random.default_rng(40)
    for shape, weight_shape, reduction in itertools.product(
        [(6, 5), (2, 3, 4, 5)], [None, "same", "last"], REDUCTIONS
    ):
        x = rng.uniform(0.02, 0.98, shape).astype(np.float32)
        t = rng.uniform(0, 1, shape).astype(np.float32)
        if weight_shape is None:
            w = None
        else:
            w_shape = shape if weight_shape == "same" else shape[-1:]
            w = rng.uniform(0.2, 2.0, w_shape).astype(np.float32)
        _check_against_torch(
            lambda x, t, r=reduction, w=w: F.binary_cross_entropy(x, t, w, reduction=r),
            lambda x, t, r=reduction, w=w: TF.binary_cross_entropy(x, t, _torch(w), reduction=r),
            [x, t],
            shape if reduction == "none" else (),
            rng,
            diff=(0, 1),
            grad=reduction == "none" or weight_shape == "last",
        )


def test_binary_cross_entropy_clamps_at_the_boundaries():
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0], np.float32)
    xt = torch.tensor(x, requires_grad=True)
    expected = TF.binary_cross_entropy(xt, torch.tensor(t), reduction="sum")
    expected.backward()
    value, grad = jax.value_and_grad(
        lambda x: F.binary_cross_entropy(x, jnp.asarray(t), reduction="sum")
    )(jnp.asarray(x))
    np.testing.assert_allclose(value, expected.item(), rtol=1e-6)  # 200.69: logs clamped at -100
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-6)  # ±1e12, torch's epsilon


def test_binary_cross_entropy_errors():
    p = np.full((3, 1), 0.5, np.float32)
    with pytest.raises(ValueError) as theirs:
        TF.binary_cross_entropy(torch.tensor(p), torch.tensor(p[:, 0]))
    with pytest.raises(ValueError) as ours:
        F.binary_cross_entropy(p, p[:, 0])
    assert str(ours.value) == str(theirs.value)
    assert "Using a target size (torch.Size([3])) that is different to the input size" in str(
        ours.value
    )
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F.binary_cross_entropy(p, p, reduction="avg")
    with pytest.raises(RuntimeError, match="Found dtype Long but expected Float"):
        F.binary_cross_entropy(p, p.astype(np.int64))
    with pytest.raises(RuntimeError, match="must match the size of tensor b"):
        F.binary_cross_entropy(p.reshape(3), p.reshape(3), np.ones(2, np.float32))


def test_binary_cross_entropy_with_logits_grid():
    rng = np.random.default_rng(50)
    for shape, weighted, pos_weighted, reduction in itertools.product(
        [(6, 5), (2, 3, 4, 5)], (False, True), (False, True), REDUCTIONS
    ):
        x = (4 * rng.standard_normal(shape)).astype(np.float32)
        x.flat[0] = 60.0  # saturated logits stay finite and exact
        x.flat[-1] = -60.0
        t = rng.uniform(0, 1, shape).astype(np.float32)
        w = rng.uniform(0.2, 2.0, shape).astype(np.float32) if weighted else None
        pw = rng.uniform(0.5, 3.0, shape[-1:]).astype(np.float32) if pos_weighted else None
        kw = {"reduction": reduction}
        _check_against_torch(
            lambda x, t, w=w, pw=pw, kw=kw: F.binary_cross_entropy_with_logits(
                x, t, w, pos_weight=pw, **kw
            ),
            lambda x, t, w=w, pw=pw, kw=kw: TF.binary_cross_entropy_with_logits(
                x, t, _torch(w), pos_weight=_torch(pw), **kw
            ),
            [x, t],
            shape if reduction == "none" else (),
            rng,
            diff=(0, 1),
            grad=reduction == "none" or (weighted and pos_weighted),
        )


def test_binary_cross_entropy_with_logits_errors():
    x = np.zeros((3, 1), np.float32)
    with pytest.raises(ValueError) as theirs:
        TF.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(x[:, 0]))
    with pytest.raises(ValueError) as ours:
        F.binary_cross_entropy_with_logits(x, x[:, 0])
    assert str(ours.value) == str(theirs.value)
    x2 = np.zeros((3, 2), np.float32)
    for kwargs in ({"pos_weight": np.ones(3, np.float32)}, {"weight": np.ones(3, np.float32)}):
        torch_kwargs = {k: torch.tensor(v) for k, v in kwargs.items()}
        with pytest.raises(RuntimeError) as theirs:
            TF.binary_cross_entropy_with_logits(torch.tensor(x2), torch.tensor(x2), **torch_kwargs)
        with pytest.raises(RuntimeError) as ours:
            F.binary_cross_entropy_with_logits(x2, x2, **kwargs)
        assert "must match the size of tensor b" in str(ours.value)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F.binary_cross_entropy_with_logits(x2, x2, reduction="avg")


def test_losses_under_jit():
    rng = np.random.default_rng(60)
    x = rng.uniform(0.1, 0.9, (6, 5)).astype(np.float32)
    t = rng.uniform(0, 1, (6, 5)).astype(np.float32)
    y = np.array([0, 2, 1, 0, 4, 3], np.int32)
    pointwise = [F.mse_loss, F.l1_loss, F.binary_cross_entropy, F.binary_cross_entropy_with_logits]

    def all_losses(x, t, y):
        values = [fn(x, t) for fn in pointwise]
        return [*values, F.nll_loss(jnp.log(x), y), F.cross_entropy(x, y)]

    def grad(x, t, y):
        return jax.grad(lambda x: sum(all_losses(x, t, y)))(x)

    for got, expected in zip(jax.jit(all_losses)(x, t, y), all_losses(x, t, y)):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(grad)(x, t, y), grad(jnp.asarray(x), t, y), rtol=1e-5)
