"""``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and the cells against torch's modules.

Parity cases build the torch module, load its ``state_dict`` into the fparam module as is, and
compare outputs, final states and the gradients with respect to the input, the initial state and
every parameter (``jax.vjp`` against ``torch.autograd`` with the same random cotangents), on a
grid sampled with a fixed seed. The rest checks what a torch user sees (names, order, shapes,
``repr``, initialisation, warnings, errors) and what a JAX user expects (``jit``, ``vmap``,
``checkpoint``, keys for the dropout between layers, compile size independent of the length).
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fparam
from fparam import nn

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning"),
    pytest.mark.filterwarnings("ignore:dropout option adds dropout after all but last"),
]

# Float32 tolerance, from measurement against torch on CPU over the grid, the packed cases and
# the cells below: outputs and states differ by at most 1.2e-7 (magnitudes <= 1), gradients by
# at most 9.5e-7 (a parameter gradient of magnitude 4.8: sums over time and batch). A wrong gate
# order or formula gives differences of order 0.1.
ATOL = 3e-6
SCALED = 1e-6

# Compile time dominates this file (XLA's CPU compiler at ~0.1 s per small op group); these
# options cut it by about half here and change no value beyond float32 rounding.
_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
    "xla_llvm_disable_expensive_passes": True,
}
INPUT, HIDDEN, BATCH = 3, 4, 2


def _assert_close(actual: Any, expected: Any, label: str = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (label, actual.shape, expected.shape)
    tolerance = ATOL + SCALED * float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance, err_msg=label)


@dataclasses.dataclass(frozen=True)
class Case:
    mode: str  # RNN_TANH, RNN_RELU, LSTM, GRU
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    bias: bool = True
    batch_first: bool = False
    unbatched: bool = False
    with_hx: bool = False
    length: int = 4

    @property
    def cls(self) -> str:
        return "RNN" if self.mode.startswith("RNN") else self.mode

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "bidirectional": self.bidirectional,
        }
        if self.mode == "RNN_RELU":
            kw["nonlinearity"] = "relu"
        if self.mode == "LSTM":
            kw["proj_size"] = self.proj_size
        return kw

    def modules(self) -> tuple[Any, Any]:
        """The torch module and its fparam twin, holding torch's values."""
        torch_module = getattr(torch.nn, self.cls)(INPUT, HIDDEN, **self.kwargs())
        module = getattr(nn, self.cls)(INPUT, HIDDEN, **self.kwargs())
        module.load_state_dict(torch_module.state_dict())
        return torch_module, module

    def arrays(self, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        if self.unbatched:
            shape: tuple[int, ...] = (self.length, INPUT)
        elif self.batch_first:
            shape = (BATCH, self.length, INPUT)
        else:
            shape = (self.length, BATCH, INPUT)
        x = rng.standard_normal(shape).astype(np.float32)
        if not self.with_hx:
            return x, None
        d = 2 if self.bidirectional else 1
        batch = () if self.unbatched else (BATCH,)
        h_out = self.proj_size or HIDDEN
        h0 = rng.standard_normal((self.num_layers * d, *batch, h_out)).astype(np.float32)
        if self.mode != "LSTM":
            return x, h0
        c0 = rng.standard_normal((self.num_layers * d, *batch, HIDDEN)).astype(np.float32)
        return x, (h0, c0)


def _sampled_cases(n: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    modes = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]
    cases = []
    for i in range(n):
        mode = modes[i % 4]  # every mode equally often
        cases.append(
            Case(
                mode=mode,
                # Weighted to small stacks: compile time grows with layers x directions.
                num_layers=int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])),
                bidirectional=bool(rng.random() < 0.4),
                proj_size=int(rng.choice([0, 2])) if mode == "LSTM" else 0,
                bias=bool(rng.random() < 0.75),
                batch_first=bool(rng.integers(2)),
                unbatched=bool(rng.random() < 0.25),
                with_hx=bool(rng.integers(2)),
                length=int(rng.integers(1, 7)),
            )
        )
    return cases


def _flat(tree: Any) -> list[Any]:
    return list(tree) if isinstance(tree, (tuple, list)) else [tree]


def _torch_run(case: Case, torch_module: Any, x: np.ndarray, hx: Any, seed: int) -> dict:
    """torch's outputs and gradients for random cotangents of every output."""
    xt = torch.tensor(x, requires_grad=True)
    hxt = None
    if hx is not None:
        hxt = (
            tuple(torch.tensor(h, requires_grad=True) for h in hx)
            if isinstance(hx, tuple)
            else torch.tensor(hx, requires_grad=True)
        )
    out, hidden = torch_module(xt, hxt)
    outputs = [out, *_flat(hidden)]
    rng = np.random.default_rng(seed)
    cotangents = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in outputs]
    params = list(torch_module.named_parameters())
    leaves = [xt, *(_flat(hxt) if hxt is not None else []), *(p for _, p in params)]
    grads = torch.autograd.grad(outputs, leaves, [torch.tensor(c) for c in cotangents])
    return {
        "outputs": [o.detach().numpy() for o in outputs],
        "cotangents": cotangents,
        "grad_x": grads[0].numpy(),
        "grad_hx": [g.numpy() for g in grads[1 : len(leaves) - len(params)]],
        "grad_params": {n: g.numpy() for (n, _), g in zip(params, grads[-len(params) :])},
    }


def _run(module: Any, x: Any, hx: Any, cotangent: Any) -> tuple[Any, ...]:
    if hx is None:
        y, vjp = jax.vjp(lambda m, x: m(x), module, x)
        grad_module, grad_x = vjp(cotangent)
        grad_hx = None
    else:
        y, vjp = jax.vjp(lambda m, x, hx: m(x, hx), module, x, hx)
        grad_module, grad_x, grad_hx = vjp(cotangent)
    return y, grad_x, grad_hx, grad_module


@partial(jax.jit, compiler_options=_FAST_COMPILE)
def _values_and_grads(modules: list, xs: list, hxs: list, cotangents: list) -> list:
    """Outputs and gradients of several modules in one program (one compilation)."""
    return [_run(*args) for args in zip(modules, xs, hxs, cotangents, strict=True)]


def _check_cases(cases: list[Case], seed: int) -> None:
    rng = np.random.default_rng(seed)
    modules, xs, hxs, cotangents, expected = [], [], [], [], []
    for i, case in enumerate(cases):
        torch_module, module = case.modules()
        assert list(module.state_dict()) == list(torch_module.state_dict()), case
        x, hx = case.arrays(rng)
        ref = _torch_run(case, torch_module, x, hx, seed + i)
        cot = ref["cotangents"]
        modules.append(module)
        xs.append(x)
        hxs.append(hx)
        cotangents.append((cot[0], (cot[1], cot[2])) if case.mode == "LSTM" else tuple(cot))
        expected.append(ref)
    results = _values_and_grads(modules, xs, hxs, cotangents)
    for case, ref, (y, grad_x, grad_hx, grad_module) in zip(cases, expected, results):
        out, hidden = y
        for got, want in zip([out, *_flat(hidden)], ref["outputs"], strict=True):
            _assert_close(got, want, f"{case} output")
        _assert_close(grad_x, ref["grad_x"], f"{case} grad input")
        if case.with_hx:
            for got, want in zip(_flat(grad_hx), ref["grad_hx"], strict=True):
                _assert_close(got, want, f"{case} grad hx")
        grads = dict(grad_module.named_parameters())
        assert list(grads) == list(ref["grad_params"])
        for name, want in ref["grad_params"].items():
            _assert_close(grads[name], want, f"{case} grad {name}")


def test_parity_with_torch_on_a_sampled_grid() -> None:
    """Outputs, final states and gradients (input, initial state, every parameter) for 20
    configurations over mode, layers, directions, proj_size, bias, batch_first, unbatched
    inputs, given or default initial states and lengths 1-6."""
    cases = _sampled_cases(20, seed=102)
    # The grid reaches every option.
    assert {c.mode for c in cases} == {"RNN_TANH", "RNN_RELU", "LSTM", "GRU"}
    for field in ("bidirectional", "bias", "batch_first", "unbatched", "with_hx"):
        assert {getattr(c, field) for c in cases} == {False, True}, field
    assert {c.num_layers for c in cases} == {1, 2, 3}
    assert {c.proj_size for c in cases if c.mode == "LSTM"} == {0, 2}
    _check_cases(cases, seed=102)


# --------------------------------------------------------------------------------------------
# What a torch user sees: names, order, shapes, repr, initial values


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        ("RNN", {"num_layers": 2, "nonlinearity": "relu", "bidirectional": True}),
        ("LSTM", {"num_layers": 3, "proj_size": 2, "bias": False, "batch_first": True}),
        ("LSTM", {"num_layers": 2, "proj_size": 3, "bidirectional": True, "dropout": 0.25}),
        ("GRU", {"num_layers": 2, "bias": False, "bidirectional": True}),
    ],
)
def test_parameters_names_order_shapes_and_repr_are_torchs(cls: str, kwargs: dict) -> None:
    torch_module = getattr(torch.nn, cls)(5, 4, **kwargs)
    module = getattr(nn, cls)(5, 4, **kwargs)
    expected = [(n, tuple(p.shape)) for n, p in torch_module.named_parameters()]
    assert [(n, tuple(p.shape)) for n, p in module.named_parameters()] == expected
    assert [(n, tuple(v.shape)) for n, v in module.state_dict().items()] == expected
    assert repr(module) == repr(torch_module)
    assert module._flat_weights_names == torch_module._flat_weights_names
    assert module._all_weights == torch_module._all_weights
    shapes = [[tuple(w.shape) for w in ws] for ws in module.all_weights]
    assert shapes == [[tuple(w.shape) for w in ws] for ws in torch_module.all_weights]
    for attr in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first"):
        assert getattr(module, attr) == getattr(torch_module, attr), attr
    assert (module.dropout, module.bidirectional, module.proj_size) == (
        torch_module.dropout,
        torch_module.bidirectional,
        torch_module.proj_size,
    )
    if cls == "RNN":
        assert module.nonlinearity == torch_module.nonlinearity
    module.flatten_parameters()  # torch's cuDNN call: nothing to do, nothing changes
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in expected]


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        ("RNNCell", (3, 4, False, "relu")),
        ("RNNCell", (3, 4)),
        ("LSTMCell", (3, 4)),
        ("GRUCell", (3, 4, False)),
    ],
)
def test_cells_parameters_and_repr_are_torchs(cls: str, args: tuple) -> None:
    torch_module = getattr(torch.nn, cls)(*args)
    module = getattr(nn, cls)(*args)
    assert [(n, None if p is None else tuple(p.shape)) for n, p in module._parameters.items()] == [
        (n, None if p is None else tuple(p.shape)) for n, p in torch_module._parameters.items()
    ]
    assert list(module.state_dict()) == list(torch_module.state_dict())
    assert repr(module) == repr(torch_module)


def test_initial_values_are_uniform_in_torchs_bound() -> None:
    module = nn.LSTM(3, 16, num_layers=2, bidirectional=True, proj_size=8)
    bound = 1 / math.sqrt(16)
    values = np.concatenate([np.ravel(p) for p in module.parameters()])
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.98 * bound
    assert abs(values.mean()) < 0.02 and abs(values.std() - bound / math.sqrt(3)) < 0.01
    # distinct values per parameter, and a key gives the same layer twice
    assert len({np.asarray(p).tobytes() for p in module.parameters()}) == 20
    a = nn.GRUCell(3, 4, key=jax.random.key(1))
    b = nn.GRUCell(3, 4, key=jax.random.key(1))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)
    before = np.asarray(a.weight_ih)
    a.reset_parameters(key=jax.random.key(2))
    assert not np.array_equal(before, a.weight_ih)
    assert np.abs(np.asarray(a.weight_ih)).max() <= 1 / math.sqrt(4)


def test_torch_state_dict_loads_as_is_and_from_torch_twins_an_lstm() -> None:
    torch_module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    twin = fparam.from_torch(torch_module)
    assert repr(twin) == repr(torch_module)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    rng = np.random.default_rng(1)
    h0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    c0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    out_t, (h_t, c_t) = torch_module(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    out, (h, c) = jax.jit(lambda m, x, hx: m(x, hx), compiler_options=_FAST_COMPILE)(
        twin, x, (h0, c0)
    )
    _assert_close(out, out_t.detach().numpy())
    _assert_close(h, h_t.detach().numpy())
    _assert_close(c, c_t.detach().numpy())
    for cls, args in (("RNNCell", (3, 4, True, "relu")), ("GRUCell", (3, 4)), ("GRU", (3, 4, 2))):
        torch_cell = getattr(torch.nn, cls)(*args)
        assert repr(fparam.from_torch(torch_cell)) == repr(torch_cell)


# --------------------------------------------------------------------------------------------
# Cells


def test_cells_match_torch_values_and_gradients() -> None:
    """Each cell, batched and unbatched, with and without a given state: values and gradients
    (input, state, parameters), all in one compiled program."""
    rng = np.random.default_rng(3)
    specs = [
        ("RNNCell", (3, 4), False, True),
        ("RNNCell", (3, 4, False, "relu"), True, True),
        ("LSTMCell", (3, 4), False, True),
        ("LSTMCell", (3, 4, False), True, False),
        ("GRUCell", (3, 4), False, False),
        ("GRUCell", (3, 4), True, True),
    ]
    modules, xs, hxs, cots, expected = [], [], [], [], []
    for cls, args, unbatched, with_hx in specs:
        torch_cell = getattr(torch.nn, cls)(*args)
        cell = getattr(nn, cls)(*args)
        cell.load_state_dict(torch_cell.state_dict())
        batch = () if unbatched else (BATCH,)
        x = rng.standard_normal((*batch, 3)).astype(np.float32)
        hx: Any = None
        if with_hx:
            states = [rng.standard_normal((*batch, 4)).astype(np.float32)]
            if cls == "LSTMCell":
                states.append(rng.standard_normal((*batch, 4)).astype(np.float32))
            hx = tuple(states) if cls == "LSTMCell" else states[0]
        xt = torch.tensor(x, requires_grad=True)
        hxt = None if hx is None else [torch.tensor(h, requires_grad=True) for h in _flat(hx)]
        out = torch_cell(xt, None if hxt is None else (tuple(hxt) if cls == "LSTMCell" else hxt[0]))
        outs = _flat(out)
        cot = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in outs]
        params = [(n, p) for n, p in torch_cell.named_parameters()]
        leaves = [xt, *(hxt or []), *(p for _, p in params)]
        grads = torch.autograd.grad(outs, leaves, [torch.tensor(c) for c in cot])
        modules.append(cell)
        xs.append(x)
        hxs.append(hx)
        cots.append(tuple(cot) if cls == "LSTMCell" else cot[0])
        expected.append(([o.detach().numpy() for o in outs], [g.numpy() for g in grads], params))
    results = _values_and_grads(modules, xs, hxs, cots)
    for spec, (outs_t, grads_t, params), (y, gx, ghx, gm) in zip(specs, expected, results):
        for got, want in zip(_flat(y), outs_t, strict=True):
            _assert_close(got, want, f"{spec} value")
        got_grads = [gx, *(_flat(ghx) if ghx is not None else [])]
        got_grads += [getattr(gm, n) for n, _ in params]
        for got, want in zip(got_grads, grads_t, strict=True):
            _assert_close(got, want, f"{spec} grad")


# --------------------------------------------------------------------------------------------
# JAX transformations


def test_vmap_checkpoint_and_jit_grad() -> None:
    """``vmap`` over unbatched sequences equals the batched call; ``jax.checkpoint`` around the
    layer stack gives the same gradients; all under one ``jit``."""
    torch.manual_seed(0)
    module = nn.GRU(3, 4, num_layers=2)
    xs = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)  # (B, L, I)

    def loss(m: Any, x: Any) -> jax.Array:
        out, h = m(x)
        return (out**2).sum() + h.sum()

    @partial(jax.jit, compiler_options=_FAST_COMPILE)
    def run(m: Any, xs: Any) -> tuple:
        mapped_out, mapped_h = jax.vmap(m)(xs)  # each sequence unbatched: (L, I)
        batched_out, batched_h = m(jnp.swapaxes(xs, 0, 1))
        x = jnp.swapaxes(xs, 0, 1)
        g = jax.grad(loss)(m, x)
        g_remat = jax.grad(jax.checkpoint(loss))(m, x)
        return mapped_out, mapped_h, batched_out, batched_h, g, g_remat

    mapped_out, mapped_h, batched_out, batched_h, g, g_remat = run(module, xs)
    _assert_close(mapped_out, jnp.swapaxes(batched_out, 0, 1))
    _assert_close(mapped_h, jnp.moveaxis(batched_h, 1, 0))
    for (name, a), (_, b) in zip(g.named_parameters(), g_remat.named_parameters(), strict=True):
        _assert_close(a, b, name)
        assert np.abs(np.asarray(a)).max() > 0, name


def test_compiled_program_does_not_grow_with_the_sequence_length() -> None:
    """One scan per layer and direction: the lowered train step is the same program (up to the
    length in the shapes) for 10 and 1000 steps."""
    module = nn.LSTM(3, 4, bidirectional=True, proj_size=2)

    def loss(m: Any, x: Any) -> jax.Array:
        out, (h, c) = m(x)
        return out.sum() + h.sum() + c.sum()

    texts = {}
    for length in (10, 1000):
        lowered = jax.jit(jax.grad(loss)).lower(module, jnp.zeros((length, 2, 3)))
        texts[length] = lowered.as_text()
    short, long = (re.sub(r"\b(10|1000)x", "Lx", texts[n]) for n in (10, 1000))
    assert len(texts[10].splitlines()) == len(texts[1000].splitlines())
    assert texts[10].count("stablehlo.while") == 4  # 2 forward scans, 2 transposed ones
    assert short.count("stablehlo.dot_general") == long.count("stablehlo.dot_general")


# --------------------------------------------------------------------------------------------
# Dropout between layers


def test_dropout_between_layers_uses_the_key_in_scope_and_only_in_training() -> None:
    module = nn.LSTM(3, 4, num_layers=3, dropout=0.5)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)

    @partial(jax.jit, compiler_options=_FAST_COMPILE)
    def run(m: Any, x: Any, key: Any) -> jax.Array:
        with fparam.rng(key):
            return m(x)[0]

    a = run(module, x, jax.random.key(0))
    b = run(module, x, jax.random.key(0))
    c = run(module, x, jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    module.eval()
    eval_out = run(module, x, jax.random.key(0))
    assert not np.allclose(a, eval_out)
    # eval mode is torch's output with no dropout
    torch_module = torch.nn.LSTM(3, 4, num_layers=3, dropout=0.5).eval()
    module.load_state_dict(torch_module.state_dict())
    _assert_close(run(module, x, jax.random.key(0)), torch_module(torch.tensor(x))[0].detach())
    # in training mode under a transformation, a draw needs a key in scope
    module.train()
    with pytest.raises(fparam._random.RandomnessError):
        jax.jit(lambda m, x: m(x)[0])(module, x)


def test_dropout_with_one_layer_warns_as_torch() -> None:
    with pytest.warns(UserWarning, match=re.escape("but got dropout=0.5 and num_layers=1")):
        nn.GRU(3, 4, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.GRU(3, 4, num_layers=2, dropout=0.5)


# --------------------------------------------------------------------------------------------
# Errors: torch's exception types and messages


def _error(fn: Any) -> tuple[type, str]:
    try:
        fn()
    except Exception as error:
        return type(error), str(error)
    raise AssertionError("no error raised")


_CONSTRUCTION_ERRORS = [
    ("RNN", (3, 4), {"nonlinearity": "sigmoid"}),
    ("RNN", (3, 4), {"proj_size": 2}),
    ("GRU", (3, 4), {"proj_size": 2}),
    ("LSTM", (3, 4), {"proj_size": 4}),
    ("LSTM", (3, 4), {"proj_size": -1}),
    ("LSTM", (3, 4), {"dropout": 1.5}),
    ("LSTM", (3, 4), {"dropout": True}),
    ("LSTM", (3, 4), {"dropout": "a"}),
    ("LSTM", (3, 4), {"num_layers": 0}),
    ("LSTM", (3.0, 4), {}),
    ("LSTM", (3, 4.0), {}),
    ("LSTM", (0, 4), {}),
    ("GRU", (3, 0), {}),
    ("GRU", (3, 4), {"bias": 1}),
    ("RNN", (3, 4), {"batch_first": None}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), _CONSTRUCTION_ERRORS)
def test_constructor_errors_are_torchs(cls: str, args: tuple, kwargs: dict) -> None:
    expected = _error(lambda: getattr(torch.nn, cls)(*args, **kwargs))
    assert _error(lambda: getattr(nn, cls)(*args, **kwargs)) == expected


def _forward_errors() -> list[tuple[str, tuple, dict, Any, Any]]:
    z = np.zeros
    lstm_h = (z((1, 2, 5), np.float32), z((1, 2, 5), np.float32))
    return [
        ("LSTM", (3, 5), {}, z((6, 2, 4), np.float32), None),
        ("LSTM", (3, 5), {}, z((6, 2, 3), np.float32), (z((1, 3, 5)), z((1, 2, 5)))),
        ("LSTM", (3, 5), {}, z((6, 2, 3), np.float32), (z((1, 2, 5)), z((1, 2, 4)))),
        ("LSTM", (3, 5), {}, z((6, 2, 3), np.float32), (z((2, 5)), z((1, 2, 5)))),
        ("LSTM", (3, 5), {}, z((6, 3), np.float32), lstm_h),
        ("LSTM", (3, 5), {"proj_size": 2}, z((6, 2, 3), np.float32), lstm_h),
        ("LSTM", (3, 5), {}, z((6, 2, 3, 1), np.float32), None),
        ("LSTM", (3, 5), {}, z((0, 2, 3), np.float32), None),
        ("GRU", (3, 5), {}, z((6, 2, 3), np.float32), z((1, 3, 5), np.float32)),
        ("GRU", (3, 5), {}, z((6, 2, 3), np.float32), z((3, 5), np.float32)),
        ("GRU", (3, 5), {}, z((6, 3), np.float32), z((1, 3, 5), np.float32)),
        ("GRU", (3, 5), {"batch_first": True}, z((2, 6, 3), np.float32), z((1, 6, 5))),
        ("RNN", (3, 5), {}, z((6,), np.float32), None),
        ("RNN", (3, 5, 2, "tanh", True, False, 0.0, True), {}, z((6, 2, 3)), z((2, 2, 5))),
        ("RNNCell", (3, 4), {}, z((2, 5), np.float32), None),
        ("RNNCell", (3, 4), {}, z((2, 3), np.float32), z((3, 4), np.float32)),
        ("RNNCell", (3, 4), {}, z((2, 3), np.float32), z((2, 5), np.float32)),
        ("RNNCell", (3, 4, True, "foo"), {}, z((3,), np.float32), None),
        ("LSTMCell", (3, 4), {}, z((2, 3), np.float32), (z((2, 5)), z((2, 4)))),
        ("LSTMCell", (3, 4), {}, z((2, 3), np.float32), (z((2, 4)), z((2, 5)))),
        ("LSTMCell", (3, 4), {}, z((2, 3), np.float32), (z((2, 4, 1)), z((2, 4)))),
        ("GRUCell", (3, 4), {}, z((2, 3, 3), np.float32), None),
        ("GRUCell", (3, 4), {}, z((2, 3), np.float32), z((2, 4, 1), np.float32)),
    ]


@pytest.mark.parametrize("index", range(len(_forward_errors())))
def test_forward_errors_are_torchs(index: int) -> None:
    """Bad inputs and states raise torch's exception type with torch's message (shapes, ranks,
    sizes, empty sequences). Checked before any computation: nothing is compiled."""
    cls, args, kwargs, x, hx = _forward_errors()[index]
    torch_module = getattr(torch.nn, cls)(*args, **kwargs)
    module = getattr(nn, cls)(*args, **kwargs)
    module.load_state_dict(torch_module.state_dict())

    def as_torch(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, tuple):
            return tuple(torch.tensor(v, dtype=torch.float32) for v in value)
        return torch.tensor(value, dtype=torch.float32)

    expected = _error(lambda: torch_module(as_torch(x), as_torch(hx)))
    hx_f = hx if hx is None or isinstance(hx, tuple) else hx.astype(np.float32)
    if isinstance(hx_f, tuple):
        hx_f = tuple(v.astype(np.float32) for v in hx_f)
    assert _error(lambda: module(x.astype(np.float32), hx_f)) == expected


def test_dtype_mismatch_names_both_dtypes() -> None:
    module = nn.GRU(3, 4)
    with pytest.raises(ValueError, match=r"RNN input dtype \(int32\) does not match weight"):
        module(np.zeros((2, 2, 3), np.int32))
    with pytest.raises(TypeError, match="argument 'input' must be an array, not str"):
        module("x")
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        nn.LSTM(3, 4)(np.zeros((2, 2, 3), np.float32), np.zeros((1, 2, 4), np.float32))


# --------------------------------------------------------------------------------------------
# PackedSequence input


_PACKED_CASES = [
    # (cls, kwargs, lengths, with_hx)
    ("LSTM", {"num_layers": 2, "bidirectional": True}, [3, 5, 2], True),
    ("LSTM", {"proj_size": 2, "bidirectional": True}, [2, 4, 4], False),
    ("GRU", {"bidirectional": True, "batch_first": True}, [1, 3, 6], True),
    ("RNN", {"bidirectional": True, "nonlinearity": "relu"}, [3, 1, 4], True),
]


def test_packed_input_matches_torch_with_unsorted_lengths() -> None:
    """Batches packed with ``enforce_sorted=False`` from unsorted lengths: the packed output
    (data and layout), ``h_n``/``c_n`` at each sequence's last valid step (the reverse
    direction from each sequence's own end) and the gradients w.r.t. the packed rows, the
    initial state and every parameter, against torch."""
    from fparam.nn.utils import rnn as rnn_utils

    rng = np.random.default_rng(7)
    modules, inputs, hxs, cots, expected = [], [], [], [], []
    for cls, kwargs, lengths, with_hx in _PACKED_CASES:
        torch_module = getattr(torch.nn, cls)(INPUT, HIDDEN, **kwargs)
        module = getattr(nn, cls)(INPUT, HIDDEN, **kwargs)
        module.load_state_dict(torch_module.state_dict())
        batch, steps = len(lengths), max(lengths)
        batch_first = kwargs.get("batch_first", False)
        shape = (batch, steps, INPUT) if batch_first else (steps, batch, INPUT)
        x = rng.standard_normal(shape).astype(np.float32)
        d = 2 if kwargs.get("bidirectional") else 1
        layers = kwargs.get("num_layers", 1)
        hx: Any = None
        if with_hx:
            h_out = kwargs.get("proj_size") or HIDDEN
            h0 = rng.standard_normal((layers * d, batch, h_out)).astype(np.float32)
            c0 = rng.standard_normal((layers * d, batch, HIDDEN)).astype(np.float32)
            hx = (h0, c0) if cls == "LSTM" else h0
        # torch: the gradient is taken w.r.t. the packed rows (the same rows fparam packs:
        # tests/nn/test_rnn_utils.py), so no eager pad/pack op is compiled here
        packed_t = torch.nn.utils.rnn.pack_padded_sequence(
            torch.tensor(x), torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
        data_t = packed_t.data.clone().requires_grad_(True)
        packed_t = torch.nn.utils.rnn.PackedSequence(
            data_t, packed_t.batch_sizes, packed_t.sorted_indices, packed_t.unsorted_indices
        )
        hxt = None if hx is None else [torch.tensor(h, requires_grad=True) for h in _flat(hx)]
        torch_hx = None if hxt is None else (tuple(hxt) if cls == "LSTM" else hxt[0])
        out_t, hidden_t = torch_module(packed_t, torch_hx)
        outs_t = [out_t.data, *_flat(hidden_t)]
        cot = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in outs_t]
        params = list(torch_module.named_parameters())
        leaves = [data_t, *(hxt or []), *(p for _, p in params)]
        grads_t = torch.autograd.grad(outs_t, leaves, [torch.tensor(c) for c in cot])
        expected.append((out_t, [o.detach().numpy() for o in outs_t], grads_t, params))
        layout = (
            packed_t.batch_sizes.numpy(),
            packed_t.sorted_indices.numpy(),
            packed_t.unsorted_indices.numpy(),
        )
        packed = rnn_utils.PackedSequence(data_t.detach().numpy(), *layout)
        cot_hidden = (cot[1], cot[2]) if cls == "LSTM" else cot[1]
        modules.append(module)
        inputs.append(packed)
        hxs.append(hx)
        cots.append((rnn_utils.PackedSequence(cot[0], *layout), cot_hidden))
    results = _values_and_grads(modules, inputs, hxs, cots)
    for case, (out_t, outs_t, grads_t, params), (y, g_packed, ghx, gm) in zip(
        _PACKED_CASES, expected, results, strict=True
    ):
        out, hidden = y
        assert isinstance(out, rnn_utils.PackedSequence)
        np.testing.assert_array_equal(out.batch_sizes, out_t.batch_sizes.numpy())
        np.testing.assert_array_equal(out.sorted_indices, out_t.sorted_indices.numpy())
        np.testing.assert_array_equal(out.unsorted_indices, out_t.unsorted_indices.numpy())
        for got, want in zip([out.data, *_flat(hidden)], outs_t, strict=True):
            _assert_close(got, want, f"{case} value")
        got_grads = [g_packed.data, *(_flat(ghx) if ghx is not None else [])]
        got_grads += [getattr(gm, n) for n, _ in params]
        for got, want in zip(got_grads, grads_t, strict=True):
            _assert_close(got, want.numpy(), f"{case} grad")


def test_packed_input_errors_are_torchs() -> None:
    from fparam.nn.utils import rnn as rnn_utils

    x = np.zeros((4, 2, 3), np.float32)
    packed = rnn_utils.pack_padded_sequence(x, [4, 2])
    packed_t = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor([4, 2]))
    gru_t, gru = torch.nn.GRU(3, 5), nn.GRU(3, 5)
    bad_h = np.zeros((1, 3, 5), np.float32)
    expected = _error(lambda: gru_t(packed_t, torch.tensor(bad_h)))
    assert _error(lambda: gru(packed, bad_h)) == expected
    expected = _error(lambda: torch.nn.GRU(4, 5)(packed_t))
    assert _error(lambda: nn.GRU(4, 5)(packed)) == expected


def test_padded_input_with_traced_lengths_matches_torch_packed() -> None:
    """fparam's ``lengths=`` on a padded batch (lengths traced under ``jit``) gives torch's
    result for the batch packed with those lengths and padded back."""
    torch_module = torch.nn.GRU(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True)
    module = nn.GRU(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True)
    module.load_state_dict(torch_module.state_dict())
    lengths = [2, 5, 3]
    x = np.random.default_rng(5).standard_normal((3, 5, INPUT)).astype(np.float32)
    packed_t = torch.nn.utils.rnn.pack_padded_sequence(
        torch.tensor(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out_t, h_t = torch_module(packed_t)
    padded_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=True)
    run = jax.jit(lambda m, x, n: m(x, lengths=n), compiler_options=_FAST_COMPILE)
    out, h = run(module, x, np.asarray(lengths, np.int32))
    _assert_close(out, padded_t.detach().numpy())
    _assert_close(h, h_t.detach().numpy())
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\)"):
        module(x, lengths=[2, 5])
    with pytest.raises(TypeError, match="lengths must be integers"):
        module(x, lengths=np.ones(3, np.float32))
