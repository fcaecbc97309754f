"""Shared test set-up: strict JAX promotion rules, float32 everywhere, torch as the oracle, and
XLA's cheapest CPU optimization level."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Compiling dominates this suite's time, and XLA's cheapest LLVM optimization level compiles
# CPU programs several times faster; what the tests check (values against torch, shapes, errors,
# compile counts, HLO before optimization) does not depend on how fast the compiled code runs.
# XLA reads XLA_FLAGS once, when JAX starts its backend, so they are set here, before any test
# computes; appended, so flags already set (a device count) are kept. Child processes inherit
# them (tests/distributed sets its own). Not suite-wide: --xla_cpu_use_fusion_emitters=false,
# XLA's other cheap option (files opt in per jit), which gave U-Net wrong max-pool gradients
# (tests/test_real_programs.py) and an unsaturated tanh (gelu 'tanh' of -9: -6e-7, not -0.0).
# A test whose compiled code must run fast (a long training run) takes the mark
# `full_xla_optimization`, below. FPARAM_TEST_FULL_OPTIMIZATION=1 runs the whole suite with
# XLA's defaults instead.
os.environ["XLA_FLAGS"] = " ".join(
    filter(
        None,
        [
            os.environ.get("XLA_FLAGS"),
            os.environ.get("FPARAM_TEST_FULL_OPTIMIZATION") != "1"
            and "--xla_backend_optimization_level=0",
        ],
    )
)

import jax
import numpy as np
import pytest

# Silent rank or dtype promotion hides layout bugs; the suite runs with both turned into errors.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# XLA's defaults (CPU), which a jit's compiler_options put back over the flags above.
FULL_OPTIMIZATION = {"xla_backend_optimization_level": 3, "xla_cpu_use_fusion_emitters": True}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "full_xla_optimization: every jax.jit made during the test (also at an example's "
        "import) compiles with XLA's default optimization, for tests whose run time is in the "
        "compiled code rather than in compiling it",
    )


@pytest.fixture(autouse=True)
def _full_xla_optimization(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    if request.node.get_closest_marker("full_xla_optimization"):
        jit = jax.jit

        def optimized_jit(fun=None, /, **kwargs):
            kwargs["compiler_options"] = {
                **FULL_OPTIMIZATION,
                **(kwargs.get("compiler_options") or {}),
            }
            return jit(fun, **kwargs) if fun is not None else lambda f: jit(f, **kwargs)

        monkeypatch.setattr(jax, "jit", optimized_jit)
    yield


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
