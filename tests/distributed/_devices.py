"""Run a test script in a child process that sees several simulated CPU devices.

The rest of the suite keeps one device (JAX fixes its device count when it starts), so every
multi-device check runs here: a fresh interpreter with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, the suite's strict promotion rules,
and this checkout's ``fparam`` first on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import jax
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
"""


# XLA's cheapest CPU compilation: what these tests check (values, shardings, structure) does
# not depend on how fast the compiled code runs, and compiling dominates their time.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def environment(devices: int, *, fast_compile: bool = True) -> dict[str, str]:
    """The child's environment: ``devices`` CPU devices, this checkout importable, and (unless
    ``fast_compile`` is false) XLA's cheapest compilation."""
    env = dict(os.environ)
    flags = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{flags} {FAST_COMPILE}" if fast_compile else flags
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_script(
    source: str, *, devices: int = 8, timeout: float = 600, fast_compile: bool = True
) -> str:
    """Run ``source`` (dedented) in a child with ``devices`` CPU devices; return its stdout.

    A failure in the child fails the test with the child's stderr, so an assertion inside the
    script reads as it would in the test itself.
    """
    code = PRELUDE + textwrap.dedent(source)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(devices, fast_compile=fast_compile),
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"child process with {devices} devices failed (exit {result.returncode}):\n"
            f"{result.stderr[-6000:]}\n--- stdout ---\n{result.stdout[-2000:]}"
        )
    return result.stdout
