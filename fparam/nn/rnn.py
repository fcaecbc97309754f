"""Recurrent layers (``torch/nn/modules/rnn.py``): ``RNN``, ``LSTM``, ``GRU`` and their cells.

Each layer is a thin shell over ``fparam.nn.functional.rnn``: the constructor stores torch's
attributes and draws torch's initial values (every parameter ``U(-1/√hidden_size,
1/√hidden_size)``, drawn on the host: building one compiles nothing), and ``forward`` checks the
input and hidden state as torch does, then runs the recurrence: per layer and direction, one
matmul for the input projection of the whole sequence and one ``jax.lax.scan`` over time (no
Python unrolling, so compile time does not depend on the sequence length).

Constructor signatures (torch's positional forms included), attribute values, parameter names,
shapes and ``state_dict`` order (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``, ``weight_hr_l0``, then ``..._reverse``, per layer), ``extra_repr``, warnings
and error messages are torch's. A torch ``state_dict`` loads as is.

``PackedSequence`` inputs (``fparam.nn.utils.rnn``) run on the padded layout with masks: each
sequence's state is held past its length, so ``h_n`` is the state at its last valid step and
the reverse direction starts at its own end, as in torch.

Differences from torch: ``flatten_parameters()`` does nothing (there is no cuDNN weight buffer
to compact); the dropout between layers draws from fparam's key stream (``fparam.rng(key)``
under a transformation), so its mask is not torch's; ``forward(padded, lengths=...)`` is an
addition: a packed batch's result with lengths that may be traced (a ``PackedSequence`` needs
host lengths, as they fix its shape); the hidden state of a packed ``LSTM`` input is checked
(torch skips that check there and fails later in ATen).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam._module import Module, Parameter
from fparam.nn import _validation as V
from fparam.nn import init
from fparam.nn.functional import rnn as rnn_f
from fparam.nn.utils import rnn as rnn_utils

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]

# torch's messages (torch/nn/modules/rnn.py and ATen's RNN.cpp), then fparam's own.
_DROPOUT_RANGE = (
    "dropout should be a number in range [0, 1] representing the probability of an element "
    "being zeroed"
)
_DROPOUT_ONE_LAYER = (
    "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
    "expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}"
)
_NOT_TYPE = "{name} should be of type {type}, got: {got}"
_NOT_POSITIVE = "{name} must be greater than zero"
_PROJ_NEGATIVE = "proj_size should be a positive integer or zero to disable projections"
_PROJ_TOO_BIG = "proj_size has to be smaller than hidden_size"
_PROJ_NOT_LSTM = "proj_size argument is only supported for LSTM, not RNN or GRU"
_UNKNOWN_NONLINEARITY = "Unknown nonlinearity '{value}'. Select from 'tanh' or 'relu'."
_UNKNOWN_MODE = "Unrecognized RNN mode: {mode}"
_UNEXPECTED_KWARG = "{cls}.__init__() got an unexpected keyword argument '{name}'"
_INPUT_RANK = "{cls}: Expected input to be 2D or 3D, got {ndim}D{tensor} instead"
_HX_BATCHED = "For batched 3-D input, hx should also be 3-D but got {ndim}-D tensor"
_HX_UNBATCHED = "For unbatched 2-D input, hx should also be 2-D but got {ndim}-D tensor"
_HX_CX_BATCHED = (
    "For batched 3-D input, hx and cx should also be 3-D but got ({h}-D, {c}-D) tensors"
)
_HX_CX_UNBATCHED = (
    "For unbatched 2-D input, hx and cx should also be 2-D but got ({h}-D, {c}-D) tensors"
)
_LSTM_HX_PAIR = "{cls}: hx must be a tuple (h_0, c_0) of two arrays, got {type}"
_DTYPE = (
    "RNN input dtype ({input}) does not match weight dtype ({weight}). Convert input: "
    "input.astype({weight}), or build the model with dtype={input}"
)
_INPUT_DIMS = "input must have {expected} dimensions, got {ndim}"
_INPUT_SIZE = "input.size(-1) must be equal to input_size. Expected {expected}, got {got}"
_HIDDEN_SIZE = "Expected hidden size {expected}, got {got}"
_HIDDEN0_SIZE = "Expected hidden[0] size {expected}, got {got}"
_HIDDEN1_SIZE = "Expected hidden[1] size {expected}, got {got}"
_EMPTY_SEQUENCE = "Expected sequence length to be larger than 0 in RNN"
_NOT_AN_ARRAY = "{cls}.forward(): argument '{name}' must be an array, not {type}"
_LENGTHS_SHAPE = (
    "{cls}.forward(): lengths must have shape ({batch},), one length per sequence of the "
    "batched input of shape {shape}, but got shape {got}"
)
_LENGTHS_DTYPE = "{cls}.forward(): lengths must be integers, but got dtype {dtype}"
_LENGTHS_PACKED = (
    "{cls}.forward(): lengths= is for a padded input; a PackedSequence carries its own lengths"
)
# Cells (ATen's check_rnn_cell_forward_input / _hidden).
_CELL_INPUT_RANK = "{cls}: Expected input to be 1D or 2D, got {ndim}D instead"
_CELL_HIDDEN_RANK = "{cls}: Expected hidden to be 1D or 2D, got {ndim}D instead"
_CELL_HX_RANK = "{cls}: Expected hx[{idx}] to be 1D or 2D, got {ndim}D instead"
_CELL_HX_MATCH = (
    "{cls}: for a{batched} {ndim}-D input, hx should also be {ndim}-D but got {hdim}-D tensor"
)
_CELL_INPUT_SIZE = "input has inconsistent input_size: got {got} expected {expected}"
_CELL_BATCH = "Input batch size {input} doesn't match hidden{idx} batch size {hidden}"
_CELL_HIDDEN_SIZE = "hidden{idx} has inconsistent hidden_size: got {got}, expected {expected}"
_CELL_NONLINEARITY = "Unknown nonlinearity: {value}"

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _as_array(owner: str, name: str, value: Any) -> jax.Array:
    if isinstance(value, jax.Array):
        return value
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        return jnp.asarray(np.asarray(value))
    raise TypeError(_NOT_AN_ARRAY.format(cls=owner, name=name, type=type(value).__name__))


def _uniform_values(
    key: Any, shapes: dict[str, tuple[int, ...]], hidden_size: int, dtype: Any
) -> dict[str, jax.Array]:
    """torch's ``reset_parameters`` for RNNs: every parameter ``U(-1/√hidden, 1/√hidden)``.

    One draw for all the parameters, cut into pieces: an RNN has up to five parameters per
    layer and direction, and under ``jax.eval_shape`` / ``jit`` each separate draw of a new
    shape would be traced (and cached by JAX) on its own. Eagerly the draw is on the host, as
    every fparam initialiser's (nothing compiled).
    """
    stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    sizes = [math.prod(shape) for shape in shapes.values()]
    sample = init._standard("uniform", key, (sum(sizes),), np.dtype(dtype))
    values: dict[str, jax.Array] = {}
    offset = 0
    if isinstance(sample, np.ndarray):
        for (name, shape), size in zip(shapes.items(), sizes, strict=True):
            piece = sample[offset : offset + size].reshape(shape)
            values[name] = init._scaled(piece, 2 * stdv, -stdv, dtype)
            offset += size
        return values
    # Traced (jax.eval_shape, jit, vmap over keys): scale once, then lax's slices, the
    # cheapest ops to trace.
    scaled = (sample * (2 * stdv) - stdv).astype(dtype)
    for (name, shape), size in zip(shapes.items(), sizes, strict=True):
        traced = jax.lax.slice_in_dim(scaled, offset, offset + size)
        values[name] = jax.lax.reshape(traced, shape)
        offset += size
    return values


class RNNBase(Module):
    """Base of ``RNN``, ``LSTM`` and ``GRU``, like torch's ``RNNBase`` (same arguments).

    Attributes (torch's): ``mode``, ``input_size``, ``hidden_size``, ``num_layers``, ``bias``,
    ``batch_first``, ``dropout`` (a float), ``bidirectional``, ``proj_size``,
    ``_flat_weights_names`` and ``_all_weights`` (the parameter names, flat and per layer and
    direction); ``all_weights`` gives the parameters grouped the same way.
    """

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        name = type(self).__name__
        dtype = V.resolve_dtype(name, dtype)
        device = V.resolve_device(name, device)
        key = V.check_key(name, key)
        super().__init__()
        # torch's checks, in torch's order (float(dropout) first, as torch stores it so).
        dropout_value = float(dropout)
        if (
            not isinstance(dropout, numbers.Number)
            or not 0 <= dropout <= 1  # type: ignore[operator]
            or isinstance(dropout, bool)
        ):
            raise ValueError(_DROPOUT_RANGE)
        if dropout > 0 and num_layers == 1:  # type: ignore[operator]
            warnings.warn(
                _DROPOUT_ONE_LAYER.format(dropout=dropout, num_layers=num_layers), stacklevel=3
            )
        for arg, value, kind in (
            ("bias", bias, bool),
            ("batch_first", batch_first, bool),
            ("input_size", input_size, int),
            ("hidden_size", hidden_size, int),
        ):
            if not isinstance(value, kind):
                raise TypeError(
                    _NOT_TYPE.format(name=arg, type=kind.__name__, got=type(value).__name__)
                )
            if kind is int and value <= 0:
                raise ValueError(_NOT_POSITIVE.format(name=arg))
        num_layers = V.check_int(name, "num_layers", num_layers)
        if num_layers <= 0:
            raise ValueError(_NOT_POSITIVE.format(name="num_layers"))
        proj_size = V.check_int(name, "proj_size", proj_size)
        if proj_size < 0:
            raise ValueError(_PROJ_NEGATIVE)
        if proj_size >= hidden_size:
            raise ValueError(_PROJ_TOO_BIG)
        if mode not in _GATES:
            raise ValueError(_UNKNOWN_MODE.format(mode=mode))

        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = dropout_value
        self.bidirectional = bool(bidirectional)
        self.proj_size = proj_size

        gate_size = _GATES[mode] * hidden_size
        num_directions = 2 if bidirectional else 1
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
                suffix = "_reverse" if direction == 1 else ""
                group: dict[str, tuple[int, ...]] = {
                    f"weight_ih_l{layer}{suffix}": (gate_size, layer_input_size),
                    f"weight_hh_l{layer}{suffix}": (gate_size, real_hidden_size),
                }
                if bias:
                    group[f"bias_ih_l{layer}{suffix}"] = (gate_size,)
                    group[f"bias_hh_l{layer}{suffix}"] = (gate_size,)
                if proj_size > 0:
                    group[f"weight_hr_l{layer}{suffix}"] = (proj_size, hidden_size)
                shapes.update(group)
                all_weights.append(list(group))
        self._flat_weights_names = list(shapes)
        self._all_weights = all_weights
        values = _uniform_values(key, shapes, hidden_size, dtype)
        for param_name, array in values.items():
            setattr(self, param_name, Parameter(V.place(array, device)))

    # ---------------------------------------------------------------- torch's API

    def reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw torch's initial values again, in place: every parameter
        ``U(-1/√hidden_size, 1/√hidden_size)``; values keep their device or sharding.

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        shapes = {n: tuple(getattr(self, n).shape) for n in self._flat_weights_names}
        dtype = getattr(self, self._flat_weights_names[0]).dtype
        self._set_values(**_uniform_values(key, shapes, self.hidden_size, dtype))

    def flatten_parameters(self) -> None:
        """Does nothing: torch compacts its weights into one cuDNN buffer here; XLA needs none."""

    @property
    def _flat_weights(self) -> list[jax.Array | None]:
        return [getattr(self, n, None) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[jax.Array]]:
        """The parameters per layer and direction, in torch's order (as torch's property)."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # ---------------------------------------------------------------- checks

    def _expected_hidden_size(self, mini_batch: int, cell: bool = False) -> tuple[int, int, int]:
        num_directions = 2 if self.bidirectional else 1
        size = self.proj_size if (self.proj_size > 0 and not cell) else self.hidden_size
        return (self.num_layers * num_directions, mini_batch, size)

    def _check_input(self, input: jax.Array, packed: bool) -> None:
        weight_dtype = getattr(self, self._flat_weights_names[0]).dtype
        if input.dtype != weight_dtype:
            raise ValueError(_DTYPE.format(input=input.dtype, weight=weight_dtype))
        expected = 2 if packed else 3
        if input.ndim != expected:
            raise RuntimeError(_INPUT_DIMS.format(expected=expected, ndim=input.ndim))
        if self.input_size != input.shape[-1]:
            raise RuntimeError(_INPUT_SIZE.format(expected=self.input_size, got=input.shape[-1]))

    def _check_hidden(self, hx: jax.Array, expected: tuple[int, ...], message: str) -> None:
        if tuple(hx.shape) != expected:
            raise RuntimeError(message.format(expected=expected, got=list(hx.shape)))

    def _zeros(self, mini_batch: int, dtype: Any, cell: bool = False) -> jax.Array:
        return jnp.zeros(self._expected_hidden_size(mini_batch, cell), dtype)

    # ---------------------------------------------------------------- forward

    def _weights(self) -> list[rnn_f.Weights]:
        groups = []
        for names in self._all_weights:
            by_kind = {n.split("_l")[0]: getattr(self, n) for n in names}
            groups.append(
                (
                    by_kind["weight_ih"],
                    by_kind["weight_hh"],
                    by_kind.get("bias_ih"),
                    by_kind.get("bias_hh"),
                    by_kind.get("weight_hr"),
                )
            )
        return groups

    def _run(
        self,
        x: jax.Array,
        h0: jax.Array,
        c0: jax.Array | None,
        lengths: Any = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """The recurrence on a time-major ``x (T, B, I)``."""
        if x.shape[0] == 0:
            raise RuntimeError(_EMPTY_SEQUENCE)
        return rnn_f.rnn(
            self.mode,
            x,
            h0,
            c0,
            self._weights(),
            self.num_layers,
            self.bidirectional,
            self.dropout,
            self.training,
            lengths,
        )

    def _hidden_arrays(self, hx: Any) -> tuple[jax.Array, jax.Array | None]:
        name = type(self).__name__
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(_LSTM_HX_PAIR.format(cls=name, type=type(hx).__name__))
            return _as_array(name, "hx[0]", hx[0]), _as_array(name, "hx[1]", hx[1])
        return _as_array(name, "hx", hx), None

    def forward(self, input: Any, hx: Any = None, *, lengths: Any = None) -> Any:
        """Run the recurrence over ``input``.

        Arguments:
            input: ``(L, N, input_size)`` (``(N, L, input_size)`` with ``batch_first``),
                unbatched ``(L, input_size)``, or a ``PackedSequence``.
            hx: the initial state (zeros when None): ``h_0`` of shape ``(D * num_layers, N,
                H_out)`` (``(D * num_layers, H_out)`` unbatched), and for ``LSTM`` a tuple
                ``(h_0, c_0)`` with ``c_0`` of ``hidden_size``. ``H_out`` is ``proj_size`` when
                it is set, else ``hidden_size``.
            lengths: fparam's addition, for a padded batched input: ``(N,)`` valid lengths,
                which may be traced (computed inside ``jit``), where a ``PackedSequence`` needs
                host lengths. The result is torch's for the same batch packed with these lengths
                and padded back: the state is held past each length (``h_n`` is the state at the
                last valid step, the reverse direction starts at each sequence's own end), and
                ``output`` is zero there.

        Returns:
            ``(output, h_n)`` (``LSTM``: ``(output, (h_n, c_n))``): ``output`` holds the last
            layer's ``h_t`` for every ``t``, both directions concatenated on the last axis; a
            ``PackedSequence`` input gives a ``PackedSequence`` output.
        """
        name = type(self).__name__
        if isinstance(input, rnn_utils.PackedSequence):
            if lengths is not None:
                raise ValueError(_LENGTHS_PACKED.format(cls=name))
            return self._forward_packed(input, hx)
        lstm = self.mode == "LSTM"
        input = _as_array(name, "input", input)
        if input.ndim not in (2, 3):
            tensor = " tensor" if self.mode.startswith("RNN") else ""
            raise ValueError(_INPUT_RANK.format(cls=name, ndim=input.ndim, tensor=tensor))
        is_batched = input.ndim == 3
        batch_dim = 0 if self.batch_first else 1
        if not is_batched:
            input = jnp.expand_dims(input, batch_dim)
        h0: jax.Array | None = None
        c0: jax.Array | None = None
        if hx is not None:
            h0, c0 = self._hidden_arrays(hx)
            if lstm:
                assert c0 is not None
                want = 3 if is_batched else 2
                if h0.ndim != want or c0.ndim != want:
                    message = _HX_CX_BATCHED if is_batched else _HX_CX_UNBATCHED
                    raise RuntimeError(message.format(h=h0.ndim, c=c0.ndim))
                if not is_batched:
                    h0, c0 = h0[:, None], c0[:, None]
            elif is_batched and h0.ndim != 3:
                raise RuntimeError(_HX_BATCHED.format(ndim=h0.ndim))
            elif not is_batched:
                if h0.ndim != 2:
                    raise RuntimeError(_HX_UNBATCHED.format(ndim=h0.ndim))
                h0 = h0[:, None]
        mini_batch = input.shape[batch_dim]
        if h0 is None:
            # torch's zeros: RNN and GRU take hidden_size (no projection there).
            h0 = self._zeros(mini_batch, input.dtype)
            c0 = self._zeros(mini_batch, input.dtype, cell=True) if lstm else None
        self._check_input(input, packed=False)
        expected = self._expected_hidden_size(mini_batch)
        if lstm:
            assert c0 is not None
            self._check_hidden(h0, expected, _HIDDEN0_SIZE)
            self._check_hidden(c0, self._expected_hidden_size(mini_batch, True), _HIDDEN1_SIZE)
        else:
            self._check_hidden(h0, expected, _HIDDEN_SIZE)

        if lengths is not None:
            # Host lengths stay on the host (the mask is then a constant of the program).
            if isinstance(lengths, (list, tuple, np.ndarray)):
                lengths = np.asarray(lengths)
            else:
                lengths = _as_array(name, "lengths", lengths)
            if not is_batched or lengths.shape != (mini_batch,):
                raise ValueError(
                    _LENGTHS_SHAPE.format(
                        cls=name, batch=mini_batch, shape=tuple(input.shape), got=lengths.shape
                    )
                )
            if not jnp.issubdtype(lengths.dtype, jnp.integer):
                raise TypeError(_LENGTHS_DTYPE.format(cls=name, dtype=lengths.dtype))
        x = jnp.swapaxes(input, 0, 1) if self.batch_first else input
        out, h_n, c_n = self._run(x, h0, c0, lengths)
        if self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        if not is_batched:
            out = jnp.squeeze(out, batch_dim)
            h_n = h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        return (out, (h_n, c_n)) if lstm else (out, h_n)

    def _forward_packed(self, packed: Any, hx: Any) -> Any:
        """A ``PackedSequence`` input: the recurrence runs on the padded batch (in the batch's
        original order, which is also the order of torch's ``h_0``/``h_n`` for packed input)
        with a mask, and the output is packed again with the input's layout."""
        lstm = self.mode == "LSTM"
        self._check_input(packed.data, packed=True)
        mini_batch = int(packed.batch_sizes[0])
        if hx is None:
            dtype = packed.data.dtype
            # torch's zeros: RNN and GRU take hidden_size (no projection there).
            h0 = self._zeros(mini_batch, dtype)
            c0 = self._zeros(mini_batch, dtype, cell=True) if lstm else None
        else:
            h0, c0 = self._hidden_arrays(hx)
        expected = self._expected_hidden_size(mini_batch)
        if lstm:
            assert c0 is not None
            self._check_hidden(h0, expected, _HIDDEN0_SIZE)
            self._check_hidden(c0, self._expected_hidden_size(mini_batch, True), _HIDDEN1_SIZE)
        else:
            self._check_hidden(h0, expected, _HIDDEN_SIZE)
        padded, lengths = rnn_utils._padded_from_packed(packed)
        out, h_n, c_n = self._run(padded, h0, c0, lengths)
        output = rnn_utils._packed_from_padded(out, packed)
        return (output, (h_n, c_n)) if lstm else (output, h_n)


def _reject_proj_size(cls: str, kwargs: dict[str, Any]) -> None:
    if "proj_size" in kwargs:
        raise ValueError(_PROJ_NOT_LSTM)
    for name in kwargs:
        raise TypeError(_UNEXPECTED_KWARG.format(cls=cls, name=name))


class RNN(RNNBase):
    """An Elman RNN, ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or ``relu``),
    like ``torch.nn.RNN``.

    Arguments:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        num_layers: stacked layers (each takes the previous one's output).
        nonlinearity: ``'tanh'`` or ``'relu'`` (``ValueError`` otherwise, as torch).
        bias: whether the layers have ``bias_ih_l*`` / ``bias_hh_l*``.
        batch_first: inputs and outputs are ``(N, L, H)`` instead of ``(L, N, H)``.
        dropout: dropout probability on each layer's output but the last (training mode).
        bidirectional: also run each layer backwards (``..._reverse`` parameters).
        device, dtype: placement and floating dtype of the parameters (as for ``Linear``).
        key: JAX key for the initial values; ``None`` draws from fparam's default stream.

    Parameters per layer ``k``: ``weight_ih_lk (hidden_size, input_size or D*hidden_size)``,
    ``weight_hh_lk (hidden_size, hidden_size)``, ``bias_ih_lk``, ``bias_hh_lk
    (hidden_size,)``, all ``U(-1/√hidden_size, 1/√hidden_size)``. ``proj_size`` is refused
    (``ValueError``, torch's message). See :meth:`RNNBase.forward`.
    """

    nonlinearity: str

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
        **kwargs: Any,
    ) -> None:
        _reject_proj_size("RNN", kwargs)
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(_UNKNOWN_NONLINEARITY.format(value=nonlinearity))
        super().__init__(
            mode,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            key=key,
        )
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """A long short-term memory RNN, like ``torch.nn.LSTM`` (gates ``i, f, g, o`` stacked in
    that order in ``weight_ih_l*`` / ``weight_hh_l*``).

    Arguments: as :class:`RNN` (without ``nonlinearity``), plus ``proj_size``: when > 0, each
    layer's ``h_t`` is projected to ``proj_size`` features by ``weight_hr_lk (proj_size,
    hidden_size)`` (must be smaller than ``hidden_size``). ``forward(input, (h_0, c_0))``
    returns ``(output, (h_n, c_n))``; see :meth:`RNNBase.forward`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            key=key,
        )


class GRU(RNNBase):
    """A gated recurrent unit RNN, like ``torch.nn.GRU`` (gates ``r, z, n`` stacked in that
    order; ``n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))``,
    ``h_t = (1 - z_t) * n_t + z_t * h_{t-1}``).

    Arguments: as :class:`RNN` (without ``nonlinearity``); ``proj_size`` is refused
    (``ValueError``, torch's message). See :meth:`RNNBase.forward`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
        **kwargs: Any,
    ) -> None:
        _reject_proj_size("GRU", kwargs)
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            key=key,
        )


# ------------------------------------------------------------------------------------ cells


class RNNCellBase(Module):
    """Base of the cells, like torch's ``RNNCellBase``: ``weight_ih (chunks * hidden,
    input_size)``, ``weight_hh (chunks * hidden, hidden)``, ``bias_ih``, ``bias_hh (chunks *
    hidden,)`` (registered as None with ``bias=False``), all ``U(-1/√hidden, 1/√hidden)``."""

    input_size: int
    hidden_size: int
    bias: bool
    weight_ih: jax.Array
    weight_hh: jax.Array

    _mode = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        name = type(self).__name__
        input_size = V.check_size(name, "input_size", input_size)
        hidden_size = V.check_size(name, "hidden_size", hidden_size)
        dtype = V.resolve_dtype(name, dtype)
        device = V.resolve_device(name, device)
        key = V.check_key(name, key)
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (num_chunks * hidden_size, input_size),
            "weight_hh": (num_chunks * hidden_size, hidden_size),
        }
        if bias:
            shapes["bias_ih"] = (num_chunks * hidden_size,)
            shapes["bias_hh"] = (num_chunks * hidden_size,)
        values = _uniform_values(key, shapes, hidden_size, dtype)
        self.weight_ih = Parameter(V.place(values["weight_ih"], device))
        self.weight_hh = Parameter(V.place(values["weight_hh"], device))
        if bias:
            self.bias_ih = Parameter(V.place(values["bias_ih"], device))
            self.bias_hh = Parameter(V.place(values["bias_hh"], device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def reset_parameters(self, key: jax.Array | None = None) -> None:
        """Draw torch's initial values again, in place (``U(-1/√hidden, 1/√hidden)``).

        Arguments:
            key: a JAX key; ``None`` draws from fparam's default key stream.
        """
        shapes = {n: tuple(p.shape) for n, p in self.named_parameters()}
        values = _uniform_values(key, shapes, self.hidden_size, self.weight_ih.dtype)
        self._set_values(**values)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = getattr(self, "nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s

    def _prepare(
        self, input: Any, hx: Any, n_states: int
    ) -> tuple[jax.Array, list[jax.Array], bool]:
        """torch's rank checks, unbatched inputs made batched, zeros for a missing ``hx``, then
        ATen's size checks. Returns ``(input (B, I), states [(B, H)], is_batched)``."""
        name = type(self).__name__
        input = _as_array(name, "input", input)
        if input.ndim not in (1, 2):
            raise ValueError(_CELL_INPUT_RANK.format(cls=name, ndim=input.ndim))
        states: list[jax.Array] | None = None
        if hx is not None:
            if n_states == 2:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(_LSTM_HX_PAIR.format(cls=name, type=type(hx).__name__))
                states = [_as_array(name, f"hx[{i}]", h) for i, h in enumerate(hx)]
                for i, h in enumerate(states):
                    if h.ndim not in (1, 2):
                        raise ValueError(_CELL_HX_RANK.format(cls=name, idx=i, ndim=h.ndim))
            else:
                states = [_as_array(name, "hx", hx)]
                if states[0].ndim not in (1, 2):
                    raise ValueError(_CELL_HIDDEN_RANK.format(cls=name, ndim=states[0].ndim))
        is_batched = input.ndim == 2
        if states is not None:
            for h in states:
                if h.ndim != input.ndim:
                    raise RuntimeError(
                        _CELL_HX_MATCH.format(
                            cls=name,
                            batched="" if is_batched else "n unbatched",
                            ndim=input.ndim,
                            hdim=h.ndim,
                        )
                    )
        if not is_batched:
            input = input[None]
            states = None if states is None else [h[None] for h in states]
        if states is None:
            states = [jnp.zeros((input.shape[0], self.hidden_size), input.dtype)] * n_states
        if input.shape[1] != self.input_size:
            raise RuntimeError(
                _CELL_INPUT_SIZE.format(got=input.shape[1], expected=self.input_size)
            )
        for i, h in enumerate(states):
            if h.shape[0] != input.shape[0]:
                raise RuntimeError(
                    _CELL_BATCH.format(input=input.shape[0], idx=i, hidden=h.shape[0])
                )
            if h.shape[1] != self.hidden_size:
                raise RuntimeError(
                    _CELL_HIDDEN_SIZE.format(idx=i, got=h.shape[1], expected=self.hidden_size)
                )
        return input, states, is_batched

    def _cell(
        self, mode: str, input: jax.Array, h: jax.Array, c: jax.Array | None
    ) -> tuple[jax.Array, jax.Array | None]:
        return rnn_f.cell(
            mode, input, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        )


class RNNCell(RNNCellBase):
    """One step of an Elman RNN, like ``torch.nn.RNNCell``:
    ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or ``relu``).

    Arguments:
        input_size, hidden_size: features of the input and of the hidden state.
        bias: whether to learn ``bias_ih`` / ``bias_hh``.
        nonlinearity: ``'tanh'`` or ``'relu'`` (another value fails in ``forward``, as torch).
        device, dtype, key: as for ``Linear``.

    ``forward(input, hx=None)``: ``input (N, input_size)`` or ``(input_size,)``, ``hx`` of
    the matching ``(N, hidden_size)`` / ``(hidden_size,)`` (zeros when None); returns ``h'``.
    """

    nonlinearity: str

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype, key=key)
        self.nonlinearity = nonlinearity

    def forward(self, input: Any, hx: Any = None) -> jax.Array:
        input, states, is_batched = self._prepare(input, hx, 1)
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(_CELL_NONLINEARITY.format(value=self.nonlinearity))
        mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
        h, _ = self._cell(mode, input, states[0], None)
        return h if is_batched else h[0]


class LSTMCell(RNNCellBase):
    """One step of an LSTM, like ``torch.nn.LSTMCell`` (gates ``i, f, g, o``).

    Arguments: as :class:`RNNCell` without ``nonlinearity``. ``forward(input, hx=None)`` with
    ``hx = (h, c)`` (zeros when None) returns ``(h', c')``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype, key=key)

    def forward(self, input: Any, hx: Any = None) -> tuple[jax.Array, jax.Array]:
        input, states, is_batched = self._prepare(input, hx, 2)
        h, c = self._cell("LSTM", input, states[0], states[1])
        assert c is not None
        return (h, c) if is_batched else (h[0], c[0])


class GRUCell(RNNCellBase):
    """One step of a GRU, like ``torch.nn.GRUCell`` (gates ``r, z, n``; torch's formula, see
    :class:`GRU`).

    Arguments: as :class:`RNNCell` without ``nonlinearity``. ``forward(input, hx=None)``
    returns ``h'``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        key: jax.Array | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype, key=key)

    def forward(self, input: Any, hx: Any = None) -> jax.Array:
        input, states, is_batched = self._prepare(input, hx, 1)
        h, _ = self._cell("GRU", input, states[0], None)
        return h if is_batched else h[0]
