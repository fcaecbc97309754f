"""Connectionist temporal classification loss, like ``torch.nn.functional.ctc_loss``.

The forward algorithm (Graves et al. 2006, eq. 6-8) runs in log space as a ``jax.lax.scan``
over time, vectorised over the batch and the ``2S + 1`` extended-label states, so it jits with
static maximum lengths: ``T`` (the input's first axis) and ``S`` (the padded targets' width, or
for concatenated targets the largest target length, or with traced lengths the total). The
lengths themselves may be traced.

The backward pass is torch's (``ctc_loss_backward_cpu_template``), not the derivative of the
forward: a reverse scan gives the betas, and the gradient with respect to ``log_probs`` is
``(exp(lp) - exp(log Σ_{s: l'(s)=c} α_t(s) β_t(s) + nll - lp)) * grad``: torch adds the
``exp(lp)`` term, which is the gradient through a ``log_softmax`` that produced ``log_probs``.
It is 0 at ``t >= input_length``, NaN for an impossible alignment (torch's too), and 0 for it
with ``zero_infinity=True``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fparam.nn import _validation as V
from fparam.nn.functional.loss import (
    _check_reduction,
    _concrete,
    _dtype_name,
    _view,
)

__all__ = ["ctc_loss"]

_WHERE = " (while checking arguments for ctc_loss_allocate_outputs)"
_LENGTHS_INTEGRAL = "{name} must be integral"
_LENGTHS_SIZE = "{name} must be of size batch_size"
_LP_DIM = (
    "Expected 3-dimensional tensor, but got {ndim}-dimensional tensor for argument #1 "
    "'log_probs'" + _WHERE
)
_TARGETS_DIM = (
    "Expected 1 to 2 dimensions, but got {ndim}-dimensional tensor for argument #2 'targets'"
    + _WHERE
)
_BLANK = "blank must be in label range"
_AT_LEAST = "Expected {name} to have value at least 0, but got value {value}" + _WHERE
_AT_MOST = "Expected input_lengths to have value at most {t}, but got value {value}" + _WHERE
_TARGETS_SIZE = (
    "Expected tensor to have size {want} at dimension {dim}, but got size {got} for argument #2 "
    "'targets'" + _WHERE
)
_TARGETS_WIDTH = (
    "Expected tensor to have size at least {want} at dimension 1, but got size {got} for "
    "argument #2 'targets'" + _WHERE
)
_TARGET_RANGE = (
    "ctc_loss(): target value {value} is out of range for {classes} classes (fparam checks "
    "concrete targets; torch reads out of bounds)"
)
_NOT_IMPLEMENTED = "\"ctc_loss_cpu\" not implemented for '{dtype}'"

_NEG_INF = -np.inf


def _lengths(name: str, value: Any) -> Any:
    """Lengths as a 1-D integer array (NumPy when concrete, so its values can be checked)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"ctc_loss(): argument '{name}' must be a Tensor or a sequence of ints")
    if isinstance(value, (int, np.integer)):
        value = [value]
    if isinstance(value, Sequence):
        V.check_array("ctc_loss()", name, value)
        value = np.asarray(value) if len(value) else np.zeros((0,), np.int64)
    else:
        V.check_array("ctc_loss()", name, value)
        value = _view(value)
    if not jnp.issubdtype(value.dtype, jnp.integer):
        raise RuntimeError(_LENGTHS_INTEGRAL.format(name=name))
    if isinstance(value, jax.core.Tracer):
        return value.reshape(-1)
    if isinstance(value, jax.Array):
        value = np.asarray(value)
    return np.asarray(value).reshape(-1).astype(np.int64)


def _log_add(*terms: jax.Array) -> jax.Array:
    """torch's ``log(Σ exp(a_i - m)) + m`` with ``m = max a_i`` (``m = 0`` when all are -inf)."""
    m = functools.reduce(jnp.maximum, terms)
    m = jnp.where(m == _NEG_INF, 0, m)
    return jnp.log(sum(jnp.exp(a - m) for a in terms)) + m


def _shift(x: jax.Array, by: int) -> jax.Array:
    """``x[..., k - by]`` along the state axis, -inf where that falls outside (by may be < 0)."""
    k = x.shape[-1]
    pad = jnp.full((*x.shape[:-1], abs(by)), _NEG_INF, x.dtype)
    if by > 0:
        return jnp.concatenate([pad, x], axis=-1)[..., :k]
    return jnp.concatenate([x, pad], axis=-1)[..., -by:]


def _emissions(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``lp[t, b, l'(b, k)]``: (T, N, K)."""
    index = jnp.broadcast_to(labels[None], (log_probs.shape[0], *labels.shape))
    return jnp.take_along_axis(log_probs, index, axis=2)


def _alphas(
    emit: jax.Array, skip: jax.Array, input_lengths: jax.Array, target_lengths: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The log-alphas (T, N, K), frozen after each input's length, and the per-item nll (N,)."""
    n_states = emit.shape[2]
    state = jnp.arange(n_states)[None, :]
    first = jnp.where(
        (state == 0) | ((state == 1) & (target_lengths[:, None] > 0)), emit[0], _NEG_INF
    )

    def step(alpha: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        t, e = inputs
        a3 = jnp.where(skip, _shift(alpha, 2), _NEG_INF)
        new = _log_add(alpha, _shift(alpha, 1), a3) + e
        alpha = jnp.where((t < input_lengths)[:, None], new, alpha)
        return alpha, alpha

    times = jnp.arange(1, emit.shape[0])
    _, rest = jax.lax.scan(step, first, (times, emit[1:]))
    alphas = jnp.concatenate([first[None], rest], axis=0)
    last = alphas[-1]  # frozen at t = input_length - 1
    end = 2 * target_lengths
    a_end = jnp.take_along_axis(last, end[:, None], axis=1)[:, 0]
    a_prev = jnp.take_along_axis(last, jnp.maximum(end - 1, 0)[:, None], axis=1)[:, 0]
    log_likelihood = jnp.where(target_lengths == 0, a_end, _log_add(a_end, a_prev))
    nll = -log_likelihood
    nll = jnp.where(input_lengths == 0, jnp.where(target_lengths == 0, 0.0, jnp.inf), nll)
    return alphas, nll.astype(emit.dtype)


def _betas(
    emit: jax.Array, skip_up: jax.Array, input_lengths: jax.Array, target_lengths: jax.Array
) -> jax.Array:
    """The log-betas (T, N, K), -inf at ``t >= input_length`` and at states past ``2 tl``."""
    state = jnp.arange(emit.shape[2])[None, :]
    end = 2 * target_lengths[:, None]
    init_states = (state == end) | ((state == end - 1) & (end > 0))

    def step(beta: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        t, e = inputs
        b3 = jnp.where(skip_up, _shift(beta, -2), _NEG_INF)
        rec = _log_add(beta, _shift(beta, -1), b3) + e
        init = jnp.where(init_states, e, _NEG_INF)
        last = input_lengths[:, None] - 1
        beta = jnp.where(t == last, init, jnp.where(t < last, rec, _NEG_INF))
        return beta, beta

    start = jnp.full(emit.shape[1:], _NEG_INF, emit.dtype)
    times = jnp.arange(emit.shape[0])
    _, betas = jax.lax.scan(step, start, (times, emit), reverse=True)
    return betas


def _skips(labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Where state k may be reached from k - 2 (``l'(k) != l'(k-2)``), and its mirror for the
    betas (state k from k + 2)."""
    skip = jnp.zeros(labels.shape, bool).at[:, 2:].set(labels[:, 2:] != labels[:, :-2])
    skip_up = jnp.zeros(labels.shape, bool).at[:, :-2].set(labels[:, :-2] != labels[:, 2:])
    return skip, skip_up


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _ctc_nll(
    log_probs: jax.Array,
    labels: jax.Array,
    input_lengths: jax.Array,
    target_lengths: jax.Array,
    zero_infinity: bool,
) -> jax.Array:
    skip, _ = _skips(labels)
    _, nll = _alphas(_emissions(log_probs, labels), skip, input_lengths, target_lengths)
    return jnp.where(nll == jnp.inf, 0, nll) if zero_infinity else nll


def _ctc_nll_fwd(
    log_probs: jax.Array,
    labels: jax.Array,
    input_lengths: jax.Array,
    target_lengths: jax.Array,
    zero_infinity: bool,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    skip, _ = _skips(labels)
    emit = _emissions(log_probs, labels)
    alphas, nll = _alphas(emit, skip, input_lengths, target_lengths)
    out = jnp.where(nll == jnp.inf, 0, nll) if zero_infinity else nll
    return out, (log_probs, labels, input_lengths, target_lengths, emit, alphas, nll)


def _ctc_nll_bwd(
    zero_infinity: bool, residuals: tuple[jax.Array, ...], grad: jax.Array
) -> tuple[jax.Array, None, None, None]:
    log_probs, labels, input_lengths, target_lengths, emit, alphas, nll = residuals
    _, skip_up = _skips(labels)
    betas = _betas(emit, skip_up, input_lengths, target_lengths)
    ab = alphas + betas  # (T, N, K); -inf wherever beta is
    n_time, batch, _ = log_probs.shape
    where = (
        jnp.arange(n_time)[:, None, None],
        jnp.arange(batch)[None, :, None],
        jnp.broadcast_to(labels[None], ab.shape),
    )
    # log Σ_{k: l'(k) = c} exp(ab[t, b, k]), with a per-class shift so no class underflows.
    peak = jnp.full(log_probs.shape, _NEG_INF, ab.dtype).at[where].max(ab)
    peak = jnp.where(peak == _NEG_INF, 0, peak)
    total = jnp.zeros(log_probs.shape, ab.dtype).at[where].add(jnp.exp(ab - peak[where]))
    log_ab = jnp.log(total) + peak
    g = grad[None, :, None]
    result = (jnp.exp(log_probs) - jnp.exp(log_ab + nll[None, :, None] - log_probs)) * g
    live = jnp.arange(n_time)[:, None] < input_lengths[None, :]
    if zero_infinity:
        live = live & (nll != jnp.inf)[None, :]
    result = jnp.where(live[:, :, None], result, 0)
    return result.astype(log_probs.dtype), None, None, None


_ctc_nll.defvjp(_ctc_nll_fwd, _ctc_nll_bwd)

# Compiled once per shape: an eager call would otherwise trace and compile both scans anew each
# time (inside a user's jit this is simply inlined).
_ctc_nll_compiled = jax.jit(_ctc_nll, static_argnums=(4,))


def ctc_loss(
    log_probs: jax.Array,
    targets: jax.Array,
    input_lengths: Any,
    target_lengths: Any,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> jax.Array:
    """The CTC loss, like ``torch.nn.functional.ctc_loss``: values and torch's gradients.

    **Arguments:**

    - `log_probs`: ``(T, N, C)`` log-probabilities (usually a ``log_softmax`` over ``C``), or
      ``(T, C)`` unbatched; floating.
    - `targets`: padded ``(N, S)`` class indices (``S >= max(target_lengths)``), or all targets
      concatenated into one 1-D array of ``sum(target_lengths)`` entries (so an unbatched
      input's 1-D target is its full target). Integer (or float, cast as torch does).
    - `input_lengths`, `target_lengths`: ``N`` lengths each, as an integer array (JAX, NumPy,
      torch; traced values are accepted) or a sequence of ints (an int for an unbatched input).
    - `blank`: the blank label, in ``[0, C)``.
    - `reduction`: ``'mean'`` (default: each loss divided by its target length, at least 1,
      then the mean over the batch), ``'sum'`` or ``'none'``.
    - `zero_infinity`: replace infinite losses (impossible alignments) and their gradients by 0.

    Every torch check on shapes, sizes and (concrete) length values raises torch's
    ``RuntimeError`` with its wording; a concrete target value outside ``[0, C)`` (which torch
    does not check) raises ``IndexError``.

    **Returns:**

    A scalar, or ``(N,)`` losses for ``'none'`` (a scalar for an unbatched input).
    """
    V.check_array("ctc_loss()", "log_probs", log_probs)
    V.check_array("ctc_loss()", "targets", targets)
    blank = V.check_int("ctc_loss()", "blank", blank)
    _check_reduction(reduction)
    ilens = _lengths("input_lengths", input_lengths)
    tlens = _lengths("target_lengths", target_lengths)
    lp, tg = _view(log_probs), _view(targets)
    batched = lp.ndim == 3
    if not batched:
        if lp.ndim != 2:
            raise RuntimeError(_LP_DIM.format(ndim=lp.ndim + 1))
        lp = lp[:, None, :]
    if not (1 <= tg.ndim <= 2):
        raise RuntimeError(_TARGETS_DIM.format(ndim=tg.ndim))
    if not jnp.issubdtype(lp.dtype, jnp.floating):
        raise NotImplementedError(_NOT_IMPLEMENTED.format(dtype=_dtype_name(lp.dtype)))
    n_time, batch, n_classes = lp.shape
    if not 0 <= blank < n_classes:
        raise RuntimeError(_BLANK)
    if ilens.shape[0] != batch:
        raise RuntimeError(_LENGTHS_SIZE.format(name="input_lengths"))
    if tlens.shape[0] != batch:
        raise RuntimeError(_LENGTHS_SIZE.format(name="target_lengths"))
    tl_known = _concrete(tlens)
    if tl_known:
        for value in tlens:
            if value < 0:
                raise RuntimeError(_AT_LEAST.format(name="target_lengths", value=value))
    if tg.ndim == 1:
        if tl_known and tg.shape[0] != int(np.sum(tlens)):
            raise RuntimeError(
                _TARGETS_SIZE.format(want=int(np.sum(tlens)), dim=0, got=tg.shape[0])
            )
        width = int(np.max(tlens, initial=0)) if tl_known else tg.shape[0]
    else:
        if tg.shape[0] != batch:
            raise RuntimeError(_TARGETS_SIZE.format(want=batch, dim=0, got=tg.shape[0]))
        width = tg.shape[1]
        if tl_known and width < int(np.max(tlens, initial=0)):
            raise RuntimeError(_TARGETS_WIDTH.format(want=int(np.max(tlens)), got=width))
    if _concrete(ilens):
        for value in ilens:
            if value < 0:
                raise RuntimeError(_AT_LEAST.format(name="input_lengths", value=value))
            if value > n_time:
                raise RuntimeError(_AT_MOST.format(t=n_time, value=value))

    tlens_j = jnp.asarray(tlens, jnp.int32)
    tg_j = jnp.asarray(tg)
    if not jnp.issubdtype(tg_j.dtype, jnp.integer):
        tg_j = tg_j.astype(jnp.int32)
    if tg.ndim == 1:
        # Concatenated targets: gather each item's slice into a padded (N, width) array.
        offsets = jnp.cumsum(tlens_j) - tlens_j
        index = offsets[:, None] + jnp.arange(width)[None, :]
        if tg.shape[0] == 0:
            padded = jnp.zeros((batch, width), jnp.int32)
        else:
            padded = jnp.take(tg_j, jnp.clip(index, 0, tg.shape[0] - 1), axis=0)
    else:
        padded = tg_j
    padded = padded.astype(jnp.int32)
    used = jnp.arange(width)[None, :] < tlens_j[:, None]
    if _concrete(padded) and tl_known:
        values = np.asarray(padded)[np.asarray(used)]
        bad = (values < 0) | (values >= n_classes)
        if bad.any():
            raise IndexError(_TARGET_RANGE.format(value=int(values[bad][0]), classes=n_classes))
    padded = jnp.where(used, jnp.clip(padded, 0, n_classes - 1), blank)
    # Extended labels l': blank, y1, blank, y2, ..., blank (K = 2 * width + 1 states).
    labels = jnp.full((batch, 2 * width + 1), blank, jnp.int32).at[:, 1::2].set(padded)

    lp_j = jnp.asarray(lp)
    if n_time == 0:
        nll = jnp.where(tlens_j == 0, 0.0, jnp.inf).astype(lp_j.dtype)
        if zero_infinity:
            nll = jnp.where(nll == jnp.inf, 0, nll)
        nll = nll + 0 * jnp.sum(lp_j)
    else:
        nll = _ctc_nll_compiled(
            lp_j, labels, jnp.asarray(ilens, jnp.int32), tlens_j, bool(zero_infinity)
        )
    if reduction == "mean":
        return jnp.mean(nll / jnp.maximum(tlens_j, 1).astype(nll.dtype))
    if reduction == "sum":
        return jnp.sum(nll)
    return nll if batched else nll[0]
