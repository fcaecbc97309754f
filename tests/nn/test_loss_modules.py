"""Module-level parity of the loss layers with torch.nn's: values and gradients for representative
configurations, ``weight``/``pos_weight`` as buffers, legacy ``size_average``/``reduce``, call-time
reduction checks, ``repr``, and use under ``jax.jit`` and in a jitted train step.

The functions' full grids (shapes, reductions, errors) are in test_functional_loss.py.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn, optim

# Tolerances at ~5x the largest errors measured over CASES (jax 0.10.2, torch 2.13, CPU):
# values 4.8e-7 absolute (losses up to ~3; 1.4e-6 relative on a 0.17 element of a 'none'),
# gradients 9.5e-7 absolute = 8.7e-8 relative (1 ulp of an 11.4 BCE gradient), else < 2.4e-7.
VAL = {"rtol": 1e-6, "atol": 2.5e-6}
GRAD = {"rtol": 5e-7, "atol": 1e-6}

_RNG = np.random.default_rng(0)
LOGITS = _RNG.standard_normal((6, 5)).astype(np.float32)
LABELS = np.array([0, 4, 2, 1, 4, 3], np.int32)
LABELS_IGNORED = np.array([0, -100, 2, 1, 1, 3], np.int32)
LABELS_IGNORE_1 = np.array([0, 1, 2, 1, 4, 1], np.int32)
PROBS = np.asarray(jax.nn.softmax(_RNG.standard_normal((6, 5)).astype(np.float32), axis=1))
SEED_LOGITS = _RNG.standard_normal((100, 2, 2)).astype(np.float32)
SEED_LABELS = _RNG.integers(0, 2, (100, 2)).astype(np.int32)
KDIM_LOGITS = _RNG.standard_normal((4, 5, 3)).astype(np.float32)
KDIM_LABELS = _RNG.integers(0, 5, (4, 3)).astype(np.int32)
LOGP = np.asarray(jax.nn.log_softmax(LOGITS, axis=1))
W5 = np.array([1.0, 2.0, 0.5, 0.1, 3.0], np.float32)
BIN_PROBS = np.asarray(jax.nn.sigmoid(LOGITS))
BIN_TARGETS = _RNG.integers(0, 2, (6, 5)).astype(np.float32)
SOFT_TARGETS = _RNG.uniform(0, 1, (6, 5)).astype(np.float32)
REGRESSION_TARGETS = _RNG.standard_normal((6, 5)).astype(np.float32)

# (id, class name, constructor kwargs, input, target)
CASES = [
    ("ce", "CrossEntropyLoss", {}, LOGITS, LABELS),
    ("ce_weight_sum", "CrossEntropyLoss", {"weight": W5, "reduction": "sum"}, LOGITS, LABELS),
    ("ce_ignore_none", "CrossEntropyLoss", {"reduction": "none"}, LOGITS, LABELS_IGNORED),
    ("ce_ignore_1_weight", "CrossEntropyLoss", {"weight": W5, "ignore_index": 1}, LOGITS, LABELS_IGNORE_1),
    ("ce_smooth_weight", "CrossEntropyLoss", {"weight": W5, "label_smoothing": 0.2}, LOGITS, LABELS_IGNORED),
    ("ce_smooth_none", "CrossEntropyLoss", {"label_smoothing": 0.1, "reduction": "none"}, LOGITS, LABELS),
    ("ce_seed", "CrossEntropyLoss", {}, SEED_LOGITS, SEED_LABELS),
    ("ce_seed_none", "CrossEntropyLoss", {"reduction": "none"}, SEED_LOGITS, SEED_LABELS),
    ("ce_kdim_weight", "CrossEntropyLoss", {"weight": W5}, KDIM_LOGITS, KDIM_LABELS),
    ("ce_probs", "CrossEntropyLoss", {}, LOGITS, PROBS),
    ("ce_probs_weight_smooth", "CrossEntropyLoss", {"weight": W5, "label_smoothing": 0.1}, LOGITS, PROBS),
    ("ce_1d", "CrossEntropyLoss", {}, LOGITS[0], LABELS[0]),
    ("nll_weight_ignore", "NLLLoss", {"weight": W5, "ignore_index": 1}, LOGP, LABELS_IGNORE_1),
    ("nll_none", "NLLLoss", {"reduction": "none"}, LOGP, LABELS_IGNORED),
    ("mse", "MSELoss", {}, LOGITS, REGRESSION_TARGETS),
    ("l1", "L1Loss", {}, LOGITS, REGRESSION_TARGETS),
    ("l1_none", "L1Loss", {"reduction": "none"}, LOGITS, REGRESSION_TARGETS),
    ("bce_weight", "BCELoss", {"weight": W5}, BIN_PROBS, SOFT_TARGETS),
    ("bce_weight_none", "BCELoss", {"weight": W5, "reduction": "none"}, BIN_PROBS, BIN_TARGETS),
    ("bcel_weight_pos", "BCEWithLogitsLoss", {"weight": W5, "pos_weight": W5[::-1].copy()}, LOGITS, SOFT_TARGETS),
    ("bcel_pos_sum", "BCEWithLogitsLoss", {"pos_weight": W5, "reduction": "sum"}, 3 * LOGITS, BIN_TARGETS),
]  # fmt: skip

# Float targets get gradients too (torch differentiates them for these losses).
_TARGET_GRAD = {"MSELoss", "L1Loss", "BCEWithLogitsLoss", "BCELoss"}


def _to_torch(value):
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        return torch.tensor(arr.astype(np.int64) if arr.dtype.kind == "i" else arr)
    return value


def _make(name, kwargs):
    ours = getattr(nn, name)(**kwargs)
    theirs = getattr(torch.nn, name)(**{k: _to_torch(v) for k, v in kwargs.items()})
    return ours, theirs


@partial(jax.jit, static_argnums=4)
def _value_and_grads(crit, x, y, cot, target_grad):
    """Value and VJPs in one compiled call (cheaper than compiling eager VJPs op by op)."""
    if target_grad:
        value, vjp = jax.vjp(lambda a, b: crit(a, b), x, y)
        return value, vjp(cot)
    value, vjp = jax.vjp(lambda a: crit(a, y), x)
    return value, vjp(cot)


@pytest.mark.parametrize(
    ("name", "kwargs", "x", "y"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_module_matches_torch(name, kwargs, x, y):
    crit, ref = _make(name, kwargs)
    target_grad = name in _TARGET_GRAD
    tx = torch.tensor(x, requires_grad=True)
    ty = _to_torch(y).requires_grad_(target_grad)
    expected = ref(tx, ty)
    cot = np.random.default_rng(1).standard_normal(tuple(expected.shape)).astype(np.float32)
    expected.backward(torch.tensor(cot))

    value, grads = _value_and_grads(crit, x, y, cot, target_grad)
    assert value.shape == tuple(expected.shape) and value.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(value), expected.detach().numpy(), **VAL)
    np.testing.assert_allclose(np.asarray(grads[0]), tx.grad.numpy(), **GRAD)
    if target_grad:
        np.testing.assert_allclose(np.asarray(grads[1]), ty.grad.numpy(), **GRAD)
    assert repr(crit) == repr(ref) == f"{name}()"


def test_seed_case_is_class_axis_one():
    """§5.2: logits (100,2,2) with labels (100,2) have C=2 on axis 1, not the last axis."""
    loss = nn.CrossEntropyLoss()(SEED_LOGITS, SEED_LABELS)
    x = SEED_LOGITS.astype(np.float64)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    picked = np.take_along_axis(logp, SEED_LABELS[:, None, :], axis=1)
    np.testing.assert_allclose(float(loss), -picked.mean(), rtol=1e-6)
    assert nn.CrossEntropyLoss(reduction="none")(SEED_LOGITS, SEED_LABELS).shape == (100, 2)


# --------------------------------------------------------------------------------------------
# weight / pos_weight are buffers


BUFFER_CASES = [
    ("CrossEntropyLoss", {}),
    ("CrossEntropyLoss", {"weight": W5}),
    ("NLLLoss", {"weight": W5}),
    ("BCELoss", {"weight": W5}),
    ("BCELoss", {}),
    ("BCEWithLogitsLoss", {"weight": W5, "pos_weight": W5}),
    ("BCEWithLogitsLoss", {"pos_weight": W5}),
    ("MSELoss", {}),
    ("L1Loss", {}),
]


@pytest.mark.parametrize(
    ("name", "kwargs"), BUFFER_CASES, ids=[f"{n}-{sorted(k)}" for n, k in BUFFER_CASES]
)
def test_weights_are_buffers_like_torch(name, kwargs):
    crit, ref = _make(name, kwargs)
    assert [n for n, _ in crit.named_buffers()] == [n for n, _ in ref.named_buffers()]
    assert list(crit.state_dict()) == list(ref.state_dict())
    assert list(crit.named_parameters()) == [] == list(ref.named_parameters())
    for key, value in crit.state_dict().items():
        assert isinstance(value, jax.Array)
        np.testing.assert_array_equal(np.asarray(value), ref.state_dict()[key].numpy())
    # A weighted loss's buffer is not trainable: fparam.grad leaves it out.
    assert fparam._grad.trainable_mask(crit) == [False] * len(kwargs)
    # Absent weights are attributes set to None, as in torch.
    for attr in ("weight", "pos_weight"):
        if hasattr(ref, attr):
            assert (getattr(crit, attr) is None) == (getattr(ref, attr) is None)


class _Net(nn.Module):
    def __init__(self, weight=None):
        super().__init__()
        self.fc = nn.Linear(5, 3)
        self.crit = nn.CrossEntropyLoss(weight=weight)

    def forward(self, x, y):
        return self.crit(self.fc(x), y)


class _TorchNet(torch.nn.Module):
    def __init__(self, weight=None):
        super().__init__()
        self.fc = torch.nn.Linear(5, 3)
        self.crit = torch.nn.CrossEntropyLoss(weight=weight)

    def forward(self, x, y):
        return self.crit(self.fc(x), y)


W3 = np.array([1.0, 2.0, 0.5], np.float32)


def test_model_holding_a_weighted_loss_has_torch_keys():
    net, ref = _Net(W3), _TorchNet(torch.tensor(W3))
    assert (
        list(net.state_dict()) == list(ref.state_dict()) == ["fc.weight", "fc.bias", "crit.weight"]
    )
    assert [n for n, _ in net.named_buffers()] == ["crit.weight"]
    assert [n for n, _ in net.named_parameters()] == ["fc.weight", "fc.bias"]
    # torch's checkpoint, buffer included, loads as is.
    ref.crit.weight.mul_(3)
    net.load_state_dict(ref.state_dict())
    np.testing.assert_array_equal(np.asarray(net.crit.weight), 3 * W3)
    assert repr(net) == repr(ref).replace("_TorchNet", "_Net")
    # Without a weight there is no buffer key.
    assert list(_Net().state_dict()) == ["fc.weight", "fc.bias"]


# --------------------------------------------------------------------------------------------
# Legacy size_average / reduce, call-time reduction checks


LEGACY = [(None, False), (False, None), (True, None), (False, False), (None, True), (True, False)]


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize(("size_average", "reduce"), LEGACY)
def test_legacy_size_average_and_reduce(name, size_average, reduce):
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        crit = getattr(nn, name)(size_average=size_average, reduce=reduce, reduction="mean")
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref = getattr(torch.nn, name)(size_average=size_average, reduce=reduce, reduction="mean")
    assert crit.reduction == ref.reduction
    assert [(w.category, str(w.message)) for w in ours] == [
        (w.category, str(w.message)) for w in theirs
    ]
    assert len(ours) == 1
    # The warning points at the caller's line, not at fparam's internals.
    assert ours[0].filename == __file__
    target = LABELS if name == "CrossEntropyLoss" else BIN_TARGETS
    expected = ref(torch.tensor(LOGITS), _to_torch(target))
    np.testing.assert_allclose(np.asarray(crit(LOGITS, target)), expected.numpy(), **VAL)


def test_no_warning_without_legacy_arguments():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.CrossEntropyLoss(reduction="sum")
        nn.MSELoss()


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss"])  # fmt: skip
def test_bad_reduction_raises_value_error_at_call(name):
    crit, ref = _make(name, {"reduction": "avg"})  # constructs fine, as in torch
    assert repr(crit) == repr(ref)
    x = BIN_PROBS if name in ("BCELoss",) else (LOGP if name == "NLLLoss" else LOGITS)
    y = LABELS if name in ("CrossEntropyLoss", "NLLLoss") else BIN_TARGETS
    with pytest.raises(ValueError) as theirs:
        ref(torch.tensor(x), _to_torch(y))
    with pytest.raises(ValueError) as ours:
        crit(x, y)
    assert str(ours.value) == str(theirs.value) == "avg is not a valid value for reduction"


def test_options_do_not_change_repr_and_are_not_validated_at_construction():
    crit = nn.CrossEntropyLoss(weight=W3, ignore_index=1, label_smoothing=-0.1, reduction="avg")
    ref = torch.nn.CrossEntropyLoss(
        weight=torch.tensor(W3), ignore_index=1, label_smoothing=-0.1, reduction="avg"
    )
    assert repr(crit) == repr(ref) == "CrossEntropyLoss()"
    assert (crit.ignore_index, crit.label_smoothing, crit.reduction) == (
        ref.ignore_index,
        ref.label_smoothing,
        ref.reduction,
    )
    # label_smoothing > 1 fails at call with torch's type.
    with pytest.raises(RuntimeError):
        torch.nn.CrossEntropyLoss(label_smoothing=1.5)(
            torch.tensor(LOGITS), torch.tensor(LABELS).long()
        )
    with pytest.raises(RuntimeError, match=r"label_smoothing must be between 0\.0 and 1\.0"):
        nn.CrossEntropyLoss(label_smoothing=1.5)(LOGITS, LABELS)


# --------------------------------------------------------------------------------------------
# jit


def test_modules_under_jit_match_eager():
    traces = []

    @jax.jit
    def apply(crit, x, y):
        traces.append(None)
        return crit(x, y)

    crit = nn.CrossEntropyLoss(weight=W5, label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(apply(crit, LOGITS, LABELS)), np.asarray(crit(LOGITS, LABELS)), **VAL)  # fmt: skip
    # The weight is a leaf: a new value reuses the compiled function and changes the loss.
    other = nn.CrossEntropyLoss(weight=2 * W5[::-1], label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(apply(other, LOGITS, LABELS)), np.asarray(other(LOGITS, LABELS)), **VAL)  # fmt: skip
    assert len(traces) == 1
    bcel = nn.BCEWithLogitsLoss(weight=W5, pos_weight=W5)
    np.testing.assert_allclose(np.asarray(apply(bcel, LOGITS, BIN_TARGETS)), np.asarray(bcel(LOGITS, BIN_TARGETS)), **VAL)  # fmt: skip


def test_jitted_train_step_matches_torch_with_int32_labels():
    net, ref = _Net(W3), _TorchNet(torch.tensor(W3))
    # torch's tensors, which its optimizer then updates in place: the load must have copied.
    net.load_state_dict(ref.state_dict())
    x = np.random.default_rng(3).standard_normal((8, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1], np.int32)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)

    @jax.jit
    def step(net, opt, x, y):
        loss, grads = fparam.value_and_grad(lambda m: m(x, y))(net)
        net, opt = opt.step(net, grads)
        return net, opt, loss

    for _ in range(3):
        net, opt, loss = step(net, opt, x, y)
        ref_opt.zero_grad()
        expected = ref(torch.tensor(x), torch.tensor(y).long())
        expected.backward()
        ref_opt.step()
        np.testing.assert_allclose(float(loss), expected.item(), **VAL)
    np.testing.assert_allclose(np.asarray(net.fc.weight), ref.fc.weight.detach().numpy(), **GRAD)
    np.testing.assert_allclose(np.asarray(net.fc.bias), ref.fc.bias.detach().numpy(), **GRAD)
    # The loss weight is a buffer: never trained.
    np.testing.assert_array_equal(np.asarray(net.crit.weight), W3)
    assert y.dtype == np.int32
