"""Shared test set-up: strict JAX promotion rules, float32 everywhere, torch as the oracle."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np
import pytest

# Silent rank or dtype promotion hides layout bugs; the suite runs with both turned into errors.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(autouse=True)
def _seeded():
    import fparam

    fparam.manual_seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover - torch is in the test extra
        pass
    yield
