"""The recurrences behind ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and their cells, as pure functions.

torch has no public ``torch.nn.functional`` names for these (its modules call ``_VF.lstm`` and
friends), so nothing here is re-exported by ``fparam.nn.functional``; ``fparam.nn.rnn`` calls
them.

How the sequence is computed (what cuDNN and ATen do too): per layer and direction, the input
projection ``x @ W_ih.T + b_ih`` of the whole sequence is one matmul before the time loop, and
the time loop is a single ``jax.lax.scan`` whose body holds only the hidden matmul and the gate
arithmetic. Nothing is unrolled in Python, so the compiled program (and its compile time) does
not grow with the sequence length. The backward direction is the same scan with ``reverse=True``.

Variable lengths (a ``PackedSequence``) are masks: at a step ``t >= length[b]`` the state of
sequence ``b`` is held and its output is zero, so the forward direction ends with each
sequence's state at its last valid step, and the reverse scan starts each sequence at its own
end (the masked tail holds the initial state).

Gate formulas are torch's (``aten/src/ATen/native/RNN.cpp``): LSTM gates stacked ``i, f, g, o``;
GRU gates stacked ``r, z, n`` with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and
``h' = n + z * (h - n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from fparam.nn.functional import _sharding as S
from fparam.nn.functional.dropout import dropout as _dropout

__all__ = ["MODES", "cell", "rnn"]

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")

# One (layer, direction)'s weights in torch's order: (w_ih, w_hh, b_ih, b_hh, w_hr); absent
# biases / projection are None.
Weights = tuple[jax.Array, jax.Array, Any, Any, Any]


def _linear(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    y = jnp.matmul(x, w.T)
    # Explicit broadcast: fparam works under jax_numpy_rank_promotion='raise'.
    return y if b is None else y + b[(None,) * (y.ndim - 1)]


def _step(
    mode: str,
    xg: jax.Array,
    h: jax.Array,
    c: jax.Array | None,
    w_hh: jax.Array,
    b_hh: jax.Array | None,
    w_hr: jax.Array | None,
) -> tuple[jax.Array, jax.Array | None]:
    """One time step from the precomputed input gates ``xg = x @ W_ih.T + b_ih``."""
    hg = _linear(h, w_hh, b_hh)
    if mode == "LSTM":
        assert c is not None
        i, f, g, o = jnp.split(xg + hg, 4, axis=-1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        if w_hr is not None:
            h_new = jnp.matmul(h_new, w_hr.T)
        return h_new, c_new
    if mode == "GRU":
        xr, xz, xn = jnp.split(xg, 3, axis=-1)
        hr, hz, hn = jnp.split(hg, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return n + z * (h - n), None
    pre = xg + hg
    return (jnp.tanh(pre) if mode == "RNN_TANH" else jax.nn.relu(pre)), None


def cell(
    mode: str,
    input: jax.Array,
    h: jax.Array,
    c: jax.Array | None,
    w_ih: jax.Array,
    w_hh: jax.Array,
    b_ih: jax.Array | None,
    b_hh: jax.Array | None,
) -> tuple[jax.Array, jax.Array | None]:
    """One step of a cell (``RNNCell``/``LSTMCell``/``GRUCell``): ``(h', c')`` (``c'`` is None
    except for ``'LSTM'``). Shapes are the caller's to check: ``input (B, I)``, ``h (B, H)``.

    On an Explicit mesh the new state keeps the input's batch sharding (weights sharded over
    the input's axes are gathered first: FSDP) and the step runs with the axes in Auto mode.
    """
    mesh = S.explicit_mesh(input, h, c)
    if mesh is not None:
        with S.within(mesh):
            xs = S.spec(input)
            used = S.used_axes(xs)
            ws = [S.gather_used(w, used) for w in (w_ih, w_hh, b_ih, b_hh)]
            state = P(*xs[:-1], None)
            return S.in_auto(
                lambda x, h, c, ws: cell(mode, x, h, c, *ws),
                (state, None if c is None else state),
                input,
                h,
                c,
                ws,
            )
    return _step(mode, _linear(input, w_ih, b_ih), h, c, w_hh, b_hh, None)


def _direction(
    mode: str,
    x: jax.Array,
    h0: jax.Array,
    c0: jax.Array | None,
    weights: Weights,
    mask: jax.Array | None,
    reverse: bool,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """One layer in one direction over a time-major ``x (T, B, I)``: ``(out, h_T, c_T)``."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    xg = _linear(x, w_ih, b_ih)  # the whole sequence's input projection: one matmul

    def body(
        carry: tuple[jax.Array, jax.Array | None], inputs: tuple[jax.Array, Any]
    ) -> tuple[tuple[jax.Array, jax.Array | None], jax.Array]:
        h, c = carry
        xg_t, m_t = inputs
        h_new, c_new = _step(mode, xg_t, h, c, w_hh, b_hh, w_hr)
        if m_t is None:
            return (h_new, c_new), h_new
        # Past a sequence's end its state is held (and, scanning in reverse, the state is
        # still the initial one when its last valid step comes).
        h_new = jnp.where(m_t, h_new, h)
        if c_new is not None and c is not None:
            c_new = jnp.where(m_t, c_new, c)
        return (h_new, c_new), jnp.where(m_t, h_new, jnp.zeros((), h_new.dtype))

    masks = None if mask is None else mask[:, :, None]
    (h_n, c_n), out = jax.lax.scan(body, (h0, c0), (xg, masks), reverse=reverse)
    return out, h_n, c_n


def rnn(
    mode: str,
    input: jax.Array,
    h0: jax.Array,
    c0: jax.Array | None,
    weights: Sequence[Weights],
    num_layers: int,
    bidirectional: bool,
    dropout: float = 0.0,
    training: bool = False,
    lengths: jax.Array | np.ndarray | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """A stacked, optionally bidirectional recurrence over a time-major sequence.

    **Arguments:**

    - `mode`: ``'RNN_TANH'``, ``'RNN_RELU'``, ``'LSTM'`` or ``'GRU'`` (torch's mode names).
    - `input`: ``(T, B, input_size)``.
    - `h0`: ``(num_layers * num_directions, B, H_out)``; `c0` likewise with ``hidden_size``
      for ``'LSTM'``, else None.
    - `weights`: per layer, then per direction, ``(w_ih, w_hh, b_ih, b_hh, w_hr)`` in torch's
      layouts (None for an absent bias or projection).
    - `dropout`, `training`: torch's dropout on each layer's output but the last, drawn with
      ``F.dropout`` (fparam's key stream, or the key of ``fparam.rng`` under a transformation).
    - `lengths`: ``(B,)`` valid lengths (None: all ``T``); steps past a length hold the state
      and output zeros.

    **Returns:**

    ``(output (T, B, num_directions * H_out), h_n, c_n)`` with ``h_n``/``c_n`` stacked like
    ``h0``/``c0`` (``c_n`` None except for ``'LSTM'``).
    """
    mesh = S.explicit_mesh(input, h0, c0)
    if mesh is not None:
        with S.within(mesh):
            return _explicit_rnn(
                mode, input, h0, c0, weights, num_layers, bidirectional, dropout, training, lengths
            )
    num_directions = 2 if bidirectional else 1
    mask: Any = None
    if isinstance(lengths, np.ndarray):  # host lengths (a PackedSequence): a constant mask
        mask = np.arange(input.shape[0])[:, None] < lengths[None, :]
    elif lengths is not None:
        mask = jnp.arange(input.shape[0])[:, None] < jnp.asarray(lengths, jnp.int32)[None, :]
    layer_input = input
    h_n: list[jax.Array] = []
    c_n: list[jax.Array] = []
    for layer in range(num_layers):
        outs = []
        for direction in range(num_directions):
            i = layer * num_directions + direction
            out, h, c = _direction(
                mode,
                layer_input,
                h0[i],
                None if c0 is None else c0[i],
                weights[i],
                mask,
                reverse=direction == 1,
            )
            outs.append(out)
            h_n.append(h)
            if c is not None:
                c_n.append(c)
        layer_input = outs[0] if num_directions == 1 else jnp.concatenate(outs, axis=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = _dropout(layer_input, dropout, True)
    return layer_input, jnp.stack(h_n), (jnp.stack(c_n) if c_n else None)


def _explicit_rnn(
    mode: str,
    input: jax.Array,
    h0: jax.Array,
    c0: jax.Array | None,
    weights: Sequence[Weights],
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
    lengths: jax.Array | np.ndarray | None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``rnn`` on an Explicit mesh, by the rule of ``_sharding``: the output and the final
    states keep the input's time and batch sharding (features unsharded: the hidden state feeds
    the next step's matmul whole); weights sharded over the input's axes are gathered (FSDP).
    The recurrence runs with the axes in Auto mode, so its carry may take any sharding."""
    xs = S.spec(input)
    used = S.used_axes(xs)
    gathered = [tuple(S.gather_used(w, used) for w in ws) for ws in weights]
    state = P(None, xs[1], None)
    outs = (P(xs[0], xs[1], None), state, None if c0 is None else state)
    host = lengths if isinstance(lengths, np.ndarray) else None

    def body(x: Any, h: Any, c: Any, ws: Any, n: Any) -> Any:
        return rnn(
            mode,
            x,
            h,
            c,
            ws,
            num_layers,
            bidirectional,
            dropout,
            training,
            host if n is None else n,
        )

    return S.in_auto(body, outs, input, h0, c0, gathered, None if host is not None else lengths)
