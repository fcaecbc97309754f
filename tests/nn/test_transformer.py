"""The Transformer family against torch 2.13: outputs, input and parameter gradients, state
dicts, names, masks, errors, torch's nested-tensor outputs, ``from_torch`` twins, and the JAX
transformations (``jit`` + ``grad``, ``jax.checkpoint`` of a layer stack, ``vmap``, dropout
keys).

The parity grid draws 20 configurations from the options with a fixed seed: the module kind
(each layer, each stack, ``Transformer``), ``norm_first``, ``batch_first``, the activation
(``"relu"``, ``"gelu"``, a function, a module), ``bias``, attention masks (none, torch's causal
float mask, a random bool mask, a per-head 3-D float mask), key padding masks (none, bool,
float), unbatched inputs, the number of layers, a final norm, train mode (``dropout=0``) or eval
mode. Each configuration builds torch's module, loads its ``state_dict`` as is into the fparam
twin, and compares outputs and the gradients of ``sum(out * w)`` with respect to every input and
parameter.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fparam
from fparam import nn
from fparam.nn import functional as F

# Largest absolute errors measured over the grid (jax CPU vs torch 2.13 CPU, float32, values of
# order 1): outputs 1.2e-6, gradients 8.3e-6. Tolerances: a few times that.
TOL = {"rtol": 1e-4, "atol": 2e-5}
E, H, FF = 8, 2, 16
# Each configuration is one jitted program, compiled with XLA CPU's classic emitters and no
# backend optimisations (compile time, not run time, dominates at these sizes).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _jit(fn, **kwargs):
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


def _np(x):
    return np.asarray(x)


def _t(x):
    return torch.tensor(np.asarray(x))


# --------------------------------------------------------------------------------------------
# The randomized grid

KINDS = ("encoder_layer", "decoder_layer", "encoder", "decoder", "transformer")
ACTIVATIONS = ("relu", "gelu", "fn", "module")


def _activation(kind, torch_side):
    if kind in ("relu", "gelu"):
        return kind
    if kind == "fn":
        return torch.nn.functional.silu if torch_side else F.silu
    return torch.nn.GELU(approximate="tanh") if torch_side else nn.GELU(approximate="tanh")


# Compile time grows with the program: more single layers than stacks, the Transformer twice.
_KIND_PLAN = (
    ("encoder_layer", "decoder_layer", "encoder", "decoder") * 2
    + ("encoder_layer", "decoder_layer", "transformer") * 2
    + ("encoder_layer", "decoder_layer", "encoder", "decoder", "encoder_layer", "decoder_layer")
)


def _configs(n=20, seed=1234):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cfg = {
            "kind": _KIND_PLAN[i % len(_KIND_PLAN)],
            "norm_first": bool(rng.integers(2)),
            "batch_first": bool(rng.integers(2)),
            "activation": ACTIVATIONS[rng.integers(len(ACTIVATIONS))],
            "bias": bool(rng.random() < 0.75),
            "mask": ["none", "causal", "bool", "3d"][rng.integers(4)],
            "padding": ["none", "bool", "float"][rng.integers(3)],
            "unbatched": bool(rng.random() < 0.25),
            "num_layers": 2 if i in (2, 7) else 1,  # one encoder stack and one decoder stack
            "final_norm": bool(rng.integers(2)),
            "train": bool(rng.integers(2)),
            "seed": int(rng.integers(2**31)),
        }
        if cfg["unbatched"] and cfg["mask"] == "3d":
            cfg["mask"] = "bool"
        out.append(cfg)
    return out


def _layer_kwargs(cfg, torch_side):
    return dict(
        dim_feedforward=FF,
        dropout=0.0,
        activation=_activation(cfg["activation"], torch_side),
        batch_first=cfg["batch_first"],
        norm_first=cfg["norm_first"],
        bias=cfg["bias"],
    )


def _build(cfg, lib):
    torch_side = lib is torch.nn
    kw = _layer_kwargs(cfg, torch_side)
    kind, layers = cfg["kind"], cfg["num_layers"]

    def norm():
        return lib.LayerNorm(E, bias=cfg["bias"]) if cfg["final_norm"] else None

    if kind == "encoder_layer":
        return lib.TransformerEncoderLayer(E, H, **kw)
    if kind == "decoder_layer":
        return lib.TransformerDecoderLayer(E, H, **kw)
    if kind == "encoder":
        layer = lib.TransformerEncoderLayer(E, H, **kw)
        return lib.TransformerEncoder(layer, layers, norm=norm(), enable_nested_tensor=False)
    if kind == "decoder":
        return lib.TransformerDecoder(lib.TransformerDecoderLayer(E, H, **kw), layers, norm())
    return lib.Transformer(E, H, 1, 1, **kw)


def _float_mask(bool_mask, rng):
    """An additive mask: -inf where ``bool_mask``, small finite values elsewhere."""
    values = rng.uniform(-1, 1, bool_mask.shape).astype(np.float32)
    return np.where(bool_mask, -np.inf, values).astype(np.float32)


def _attn_mask(kind, length, source, rng, batch):
    """(length, source) or (batch * H, length, source); key 0 is always allowed."""
    if kind == "none":
        return None
    if kind == "causal":
        return _np(torch.nn.Transformer.generate_square_subsequent_mask(max(length, source)))[
            :length, :source
        ]
    if kind == "bool":
        mask = rng.random((length, source)) < 0.4
        mask[:, 0] = False
        return mask
    mask = rng.random((batch * H, length, source)) < 0.4
    mask[:, :, 0] = False
    return _float_mask(mask, rng)


def _padding(kind, length, rng, batch, unbatched):
    """Key padding: never position 0, so that no row is fully masked."""
    if kind == "none":
        return None
    pad = rng.random((batch, length)) < 0.4
    pad[:, 0] = False
    pad = pad[0] if unbatched else pad
    return pad if kind == "bool" else np.where(pad, -np.inf, 0.0).astype(np.float32)


def _inputs(cfg, rng):
    # Fixed sizes: the configurations share the compiled kernels of eager JAX.
    n, s, t = 2, 4, 3
    batch_first, unbatched = cfg["batch_first"], cfg["unbatched"]

    def seq(length):
        shape = (length, E) if unbatched else ((n, length, E) if batch_first else (length, n, E))
        return rng.standard_normal(shape).astype(np.float32)

    kind = cfg["kind"]
    if kind in ("encoder_layer", "encoder"):
        args = {"src": seq(s)}
        masks = {
            "src_mask" if kind == "encoder_layer" else "mask": _attn_mask(
                cfg["mask"], s, s, rng, n
            ),
            "src_key_padding_mask": _padding(cfg["padding"], s, rng, n, unbatched),
        }
        if cfg["mask"] == "causal" and kind == "encoder":
            masks["is_causal"] = True
        return args, {k: v for k, v in masks.items() if v is not None}
    args = {"tgt": seq(t)}
    masks = {
        "tgt_mask": _attn_mask(cfg["mask"], t, t, rng, n),
        "tgt_key_padding_mask": _padding(cfg["padding"], t, rng, n, unbatched),
        "memory_key_padding_mask": _padding(cfg["padding"], s, rng, n, unbatched),
    }
    if cfg["mask"] == "causal":
        masks["tgt_is_causal"] = True
    if kind == "transformer":
        args = {"src": seq(s), **args}
        masks["src_mask"] = _attn_mask("bool" if cfg["mask"] != "none" else "none", s, s, rng, n)
        masks["src_key_padding_mask"] = masks["memory_key_padding_mask"]
    else:
        args["memory"] = seq(s)
        masks["memory_mask"] = _attn_mask("bool" if cfg["mask"] != "none" else "none", t, s, rng, n)
    return args, {k: v for k, v in masks.items() if v is not None}


def _randomise(t, rng):
    """Random values for every parameter (LayerNorm's ones and zeros and zero biases too)."""
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.tensor(0.5 * rng.standard_normal(tuple(p.shape)).astype(np.float32)))


@pytest.mark.parametrize("cfg", _configs(), ids=lambda c: f"{c['kind']}-{c['seed'] % 1000}")
def test_matches_torch_over_a_randomized_grid(cfg):
    rng = np.random.default_rng(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested-tensor notices
        t = _build(cfg, torch.nn)
    _randomise(t, rng)
    m = _build(cfg, nn)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(m.state_dict()) == list(t.state_dict())
    assert [n for n, _ in m.named_modules()] == [n for n, _ in t.named_modules()]
    m.load_state_dict(t.state_dict())  # torch tensors, as is
    if not cfg["train"]:
        t.eval()
        m.eval()
    args, masks = _inputs(cfg, rng)

    # torch
    t_args = {k: torch.tensor(v, requires_grad=True) for k, v in args.items()}
    t_masks = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in masks.items()}
    t.zero_grad()
    t_out = t(**t_args, **t_masks)
    w = rng.standard_normal(tuple(t_out.shape)).astype(np.float32)
    t_out.backward(_t(w))

    # fparam
    j_masks = {k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in masks.items()}

    def loss(model, inputs):
        out = model(**inputs, **j_masks)
        return jnp.sum(out * w), out

    step = _jit(fparam.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, out), (g_m, g_in) = step(m, {k: jnp.asarray(v) for k, v in args.items()})
    np.testing.assert_allclose(_np(out), t_out.detach().numpy(), **TOL)
    for k, v in t_args.items():
        np.testing.assert_allclose(_np(g_in[k]), v.grad.numpy(), **TOL, err_msg=k)
    grads = dict(g_m.named_parameters())
    for name, p in t.named_parameters():
        np.testing.assert_allclose(_np(grads[name]), p.grad.numpy(), **TOL, err_msg=name)


def test_the_grid_covers_every_option():
    configs = _configs()
    for key in ("kind", "activation", "mask", "padding", "num_layers"):
        values = {c[key] for c in configs}
        expected = {
            "kind": set(KINDS),
            "activation": set(ACTIVATIONS),
            "mask": {"none", "causal", "bool", "3d"},
            "padding": {"none", "bool", "float"},
            "num_layers": {1, 2},
        }[key]
        assert values == expected, key
    for key in ("norm_first", "batch_first", "bias", "unbatched", "final_norm", "train"):
        assert {c[key] for c in configs} == {False, True}, key


# --------------------------------------------------------------------------------------------
# Construction: names, deep copies, initialisation, reprs


def test_names_and_state_dict_keys_are_torchs():
    t = torch.nn.Transformer(E, H, 2, 1, FF, activation=torch.nn.GELU())
    m = nn.Transformer(E, H, 2, 1, FF, activation=nn.GELU())
    assert list(m.state_dict()) == list(t.state_dict())
    assert [n for n, _ in m.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert repr(m) == repr(t).replace("NonDynamicallyQuantizableLinear", "Linear") or (
        repr(m) == repr(t)
    )


def test_encoder_layers_are_deep_copies_of_the_given_layer():
    layer = nn.TransformerEncoderLayer(E, H, FF)
    enc = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
    first = dict(layer.named_parameters())
    for i in range(3):
        for name, p in enc.layers[i].named_parameters():
            np.testing.assert_array_equal(_np(p), _np(first[name]))
            assert p is not first[name]
    # Each copy has its own parameters: changing one leaves the others and the original.
    enc.layers[0].linear1.weight = nn.Parameter(jnp.zeros((FF, E)))
    assert not np.any(_np(enc.layers[0].linear1.weight))
    assert np.any(_np(enc.layers[1].linear1.weight)) and np.any(_np(layer.linear1.weight))
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, FF), 2)
    assert dec.layers[0].self_attn is not dec.layers[1].self_attn
    assert dec.norm is None and dec.num_layers == 2


def test_transformer_draws_xavier_uniform_for_matrices_and_keeps_biases():
    m = nn.Transformer(16, 4, 2, 2, 32, key=jax.random.key(3))
    seen = []
    for name, p in m.named_parameters():
        a = _np(p)
        if a.ndim > 1:
            bound = np.sqrt(6.0 / (a.shape[0] + a.shape[1]))
            assert np.abs(a).max() <= bound and np.abs(a).max() > 0.8 * bound, name
            seen.append(a.tobytes())
        elif name.endswith("in_proj_bias") or name.endswith("out_proj.bias"):
            assert not np.any(a), name  # MultiheadAttention's zeros
        elif "norm" in name:
            assert np.all(a == (1.0 if name.endswith("weight") else 0.0)), name
    assert len(set(seen)) == len(seen)  # every matrix drawn on its own, copies included
    # The same key gives the same model; another key another one.
    again = nn.Transformer(16, 4, 2, 2, 32, key=jax.random.key(3))
    other = nn.Transformer(16, 4, 2, 2, 32, key=jax.random.key(4))
    w = "encoder.layers.1.linear1.weight"
    np.testing.assert_array_equal(_np(again.get_parameter(w)), _np(m.get_parameter(w)))
    assert not np.array_equal(_np(other.get_parameter(w)), _np(m.get_parameter(w)))


def test_generate_square_subsequent_mask_is_torchs():
    for sz in (1, 4):
        want = torch.nn.Transformer.generate_square_subsequent_mask(sz)
        got = nn.Transformer.generate_square_subsequent_mask(sz)
        assert got.dtype == jnp.float32 and got.shape == (sz, sz)
        np.testing.assert_array_equal(_np(got), want.numpy())
    half = nn.Transformer.generate_square_subsequent_mask(3, dtype=jnp.bfloat16)
    assert half.dtype == jnp.bfloat16


def test_activation_and_custom_parts():
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(E, H, activation="tanh")
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not swish"):
        nn.TransformerDecoderLayer(E, H, activation="swish")
    with pytest.raises(TypeError, match="activation"):
        nn.TransformerEncoderLayer(E, H, activation=3)
    layer = nn.TransformerEncoderLayer(E, H, FF, activation=nn.ReLU())
    assert "activation" in dict(layer.named_children())
    assert layer.activation_relu_or_gelu == 1
    assert nn.TransformerEncoderLayer(E, H, FF, activation="gelu").activation_relu_or_gelu == 2
    assert nn.TransformerEncoderLayer(E, H, FF, activation=F.silu).activation_relu_or_gelu == 0
    # Custom encoder and decoder are used as given (and reset with xavier as in torch).
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF), 1)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, FF), 1)
    model = nn.Transformer(E, H, custom_encoder=enc, custom_decoder=dec)
    assert model.encoder is enc and model.decoder is dec


def test_torchs_errors():
    model = nn.Transformer(E, H, 1, 1, FF)
    src, tgt = jnp.zeros((5, 2, E)), jnp.zeros((4, 3, E))
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        model(src, tgt)
    with pytest.raises(
        RuntimeError, match="the feature number of src and tgt must be equal to d_model"
    ):
        model(src, jnp.zeros((4, 2, E + 1)))
    bf = nn.Transformer(E, H, 1, 1, FF, batch_first=True)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        bf(jnp.zeros((2, 5, E)), jnp.zeros((3, 5, E)))
    layer = nn.TransformerEncoderLayer(E, H, FF).eval()
    with pytest.raises(AssertionError, match="only bool and floating types of src_mask"):
        layer(jnp.zeros((3, 2, E)), src_mask=jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(
        AssertionError, match="only bool and floating types of src_key_padding_mask"
    ):
        layer(jnp.zeros((3, 2, E)), src_key_padding_mask=jnp.zeros((2, 3), jnp.int32))
    with pytest.warns(UserWarning, match="Support for mismatched src_key_padding_mask and"):
        jax.eval_shape(  # (a trace: the warning comes from the Python code, nothing runs)
            lambda x, mask, pad: layer(x, src_mask=mask, src_key_padding_mask=pad),
            jnp.zeros((3, 2, E)),
            jnp.zeros((3, 3), bool),
            jnp.zeros((2, 3)),
        )


# --------------------------------------------------------------------------------------------
# torch's nested-tensor path: zeros at padded positions in eval mode


@pytest.mark.parametrize("mask_check", [True, False])
def test_eval_outputs_at_padded_positions_are_torchs_nested_tensor_outputs(mask_check):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t_layer = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True)
    t = torch.nn.TransformerEncoder(t_layer, 2, torch.nn.LayerNorm(E), mask_check=mask_check)
    _randomise(t, rng)
    t.eval()
    m = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True),
        2,
        nn.LayerNorm(E),
        mask_check=mask_check,
    )
    assert m.use_nested_tensor == t.use_nested_tensor is True
    m.load_state_dict(t.state_dict())
    m.eval()
    x = rng.standard_normal((4, 5, E)).astype(np.float32)
    paddings = [
        [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]],  # left-aligned
        [[0, 0, 0, 0, 0], [1, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]],  # not
    ]
    run = _jit(lambda m, x, pad: m(x, src_key_padding_mask=pad))
    for pad in paddings:
        pad = np.array(pad, bool)
        with torch.no_grad():
            want = t(_t(x), src_key_padding_mask=_t(pad)).numpy()
        np.testing.assert_allclose(_np(run(m, x, pad)), want, **TOL)
    # The zeros are there before the final norm: its bias appears at the padded positions.
    left = np.array(paddings[0], bool)
    got = _np(run(m, x, left))
    np.testing.assert_allclose(got[left], np.broadcast_to(_np(m.norm.bias), got[left].shape))
    # Not in training mode (as torch): the padded positions are computed.
    m.train()
    with torch.no_grad():
        t.train()
        want = t(_t(x), src_key_padding_mask=_t(left)).numpy()
    np.testing.assert_allclose(_np(run(m, x, left)), want, **TOL)
    assert not np.allclose(want[1, 3:], _np(m.norm.bias))


# --------------------------------------------------------------------------------------------
# from_torch twins


def test_from_torch_twins_a_transformer_and_an_encoder_model():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    t = torch.nn.Transformer(E, H, 2, 1, FF, dropout=0.0, batch_first=True, norm_first=True)
    twin = fparam.from_torch(t)
    assert isinstance(twin, nn.Transformer)
    assert list(twin.state_dict()) == list(t.state_dict())
    src = rng.standard_normal((2, 5, E)).astype(np.float32)
    tgt = rng.standard_normal((2, 4, E)).astype(np.float32)
    mask = t.generate_square_subsequent_mask(4)
    with torch.no_grad():
        want = t(_t(src), _t(tgt), tgt_mask=mask).numpy()
    got = _jit(lambda m, src, tgt, mask: m(src, tgt, tgt_mask=mask))(twin, src, tgt, _np(mask))
    np.testing.assert_allclose(_np(got), want, **TOL)

    layer = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation=torch.nn.GELU())
    encoder = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(E))
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the layers differ from each other
    twin = fparam.from_torch(encoder)
    assert isinstance(twin.layers[1].activation, nn.GELU)
    x = rng.standard_normal((5, 2, E)).astype(np.float32)
    pad = np.zeros((2, 5), bool)
    pad[1, 3:] = True
    with torch.no_grad():
        want = encoder(_t(x), src_key_padding_mask=_t(pad)).numpy()
    got = _jit(lambda m, x, pad: m(x, src_key_padding_mask=pad))(twin, x, pad)
    np.testing.assert_allclose(_np(got), want, **TOL)


def test_from_torch_refuses_a_torch_function_it_cannot_carry():
    layer = torch.nn.TransformerEncoderLayer(E, H, FF, activation=torch.tanh)
    with pytest.raises(TypeError, match="activation"):
        fparam.from_torch(layer)


# --------------------------------------------------------------------------------------------
# JAX transformations


def _stack(batch_first=True, dropout=0.0, layers=2):
    fparam.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, FF, dropout=dropout, batch_first=batch_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def test_jit_grad_matches_torch_and_checkpointed_layers_give_the_same_gradients():
    model = _stack()
    torch_model = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True),
        2,
        enable_nested_tensor=False,
    )
    torch_model.load_state_dict({k: _t(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 5, E)).astype(np.float32)
    mask = nn.Transformer.generate_square_subsequent_mask(5)

    def plain(m, x):
        return jnp.sum(m(x, mask=mask) ** 2)

    def remat(m, x):
        # Rematerialise each layer: its activations are recomputed in the backward pass.
        for layer in m.layers:
            x = jax.checkpoint(lambda lay, h: lay(h, src_mask=mask))(layer, x)
        return jnp.sum(x**2)

    jit_loss, jit_g = _jit(fparam.value_and_grad(plain))(model, x)
    remat_loss, remat_g = _jit(fparam.value_and_grad(remat))(model, x)
    torch_loss = torch.sum(torch_model(_t(x), mask=_t(mask)) ** 2)
    torch_loss.backward()
    np.testing.assert_allclose(float(jit_loss), float(torch_loss.detach()), rtol=1e-5)
    np.testing.assert_allclose(float(remat_loss), float(jit_loss), rtol=1e-6)
    remat_grads = dict(remat_g.named_parameters())
    for name, g in jit_g.named_parameters():
        want = torch_model.get_parameter(name).grad.numpy()
        np.testing.assert_allclose(_np(g), want, **TOL, err_msg=name)
        np.testing.assert_allclose(_np(remat_grads[name]), _np(g), **TOL, err_msg=name)


def test_vmap_over_a_batch_of_unbatched_sequences_is_the_batched_call():
    model = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0)
    src = jax.random.normal(jax.random.key(1), (3, 4, E))  # (N, S, E): vmapped over N
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    out = _jit(jax.vmap(lambda s: model(s, src_mask=mask)))(src)
    batched = _jit(lambda s: model(s.swapaxes(0, 1), src_mask=mask))(src).swapaxes(0, 1)
    np.testing.assert_allclose(_np(out), _np(batched), **TOL)


def test_dropout_draws_from_the_key_in_scope():
    model = _stack(dropout=0.5, layers=1)
    x = jax.random.normal(jax.random.key(0), (2, 5, E))

    @_jit
    def run(m, x, key):
        with fparam.rng(key):
            return m(x)

    a, b = run(model, x, jax.random.key(1)), run(model, x, jax.random.key(1))
    c = run(model, x, jax.random.key(2))
    np.testing.assert_array_equal(_np(a), _np(b))
    assert not np.allclose(_np(a), _np(c))
    with pytest.raises(fparam.RandomnessError):
        jax.jit(lambda m, x: m(x))(model, x)
    # Eval mode: no dropout, whatever the key.
    model.eval()
    np.testing.assert_array_equal(
        _np(run(model, x, jax.random.key(1))), _np(run(model, x, jax.random.key(2)))
    )
