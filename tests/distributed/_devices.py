"""Run a test script in a child process that sees several simulated CPU devices.

The rest of the suite keeps one device (JAX fixes its device count when it starts), so every
multi-device check runs here: a fresh interpreter with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, the suite's strict promotion rules,
and this checkout's ``fparam`` first on the path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import jax
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
"""


# XLA's cheapest CPU optimization level: what these tests check (values, shardings, structure)
# does not depend on how fast the compiled code runs, and compiling dominates their time. Not
# --xla_cpu_use_fusion_emitters=false: it changed results elsewhere in the suite (conftest.py).
FAST_COMPILE = "--xla_backend_optimization_level=0"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_processes(
    argv: list[str], *, processes: int = 2, devices: int = 4, timeout: float = 180
) -> list[str]:
    """Run ``processes`` children that form one JAX job (``devices`` CPU devices each); return
    their stdouts. In ``argv``, ``{port}`` becomes a free localhost port for the coordinator and
    ``{process_id}`` the child's index. A child that fails or hangs fails the test, and the
    others are killed (one left waiting on the coordinator would never end)."""
    port = str(_free_port())
    children = [
        subprocess.Popen(
            [arg.replace("{port}", port).replace("{process_id}", str(i)) for arg in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(devices),
            cwd=ROOT,
        )
        for i in range(processes)
    ]
    deadline = time.monotonic() + timeout
    outputs: list[tuple[str, str]] = [("", "")] * processes
    try:
        pending = set(range(processes))
        while pending:
            for i in sorted(pending):
                child = children[i]
                if child.poll() is None:
                    continue
                pending.discard(i)
                outputs[i] = child.communicate()
                if child.returncode != 0:
                    raise AssertionError(
                        f"process {i} of {processes} failed (exit {child.returncode}):\n"
                        f"{outputs[i][1][-6000:]}\n--- stdout ---\n{outputs[i][0][-2000:]}"
                    )
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"processes {sorted(pending)} still running after {timeout} s")
            time.sleep(0.05)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    return [out for out, _ in outputs]
