"""MultiheadAttention with its weights sharded by heads over simulated devices (issue #13).

Runs in a child process so the suite keeps one device. The heads of an in-projection are row
blocks (``in_proj_weight``: q, k, v; or ``q/k/v_proj_weight``) and the columns of
``out_proj.weight``: sharding those over a ``'model'`` axis is Megatron-style tensor parallelism
of attention. A jitted forward and backward must give the unsharded values and gradients, and
an optimizer step must keep each parameter where it was put (DESIGN.md, rule 11).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import fparam
    from fparam import nn, optim

    mesh = jax.make_mesh((4,), ("model",), axis_types=(jax.sharding.AxisType.Auto,))
    HEAD_ROWS = {"in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight",
                 "v_proj_weight"}

    def spec(name):
        if name in HEAD_ROWS:
            return P("model")
        return P(None, "model") if name == "out_proj.weight" else P()

    def name_of(path):
        return jax.tree_util.keystr(path, simple=True, separator=".")

    def loss(m, q, kv, mask):
        out, w = m(q, kv, kv, key_padding_mask=mask)
        return jnp.sum(out ** 2) + jnp.sum(w * jnp.arange(w.shape[-1]))

    for kdim in (None, 6):
        mha = nn.MultiheadAttention(16, 4, kdim=kdim, vdim=kdim, batch_first=True,
                                    key=jax.random.key(0))
        sharded = jax.tree_util.tree_map_with_path(
            lambda p, x: jax.device_put(x, NamedSharding(mesh, spec(name_of(p)))), mha)
        q = jax.random.normal(jax.random.key(1), (2, 5, 16))
        kv = jax.random.normal(jax.random.key(2), (2, 7, kdim or 16))
        mask = jnp.arange(7)[None, :] >= jnp.array([[7], [4]])
        ref_loss, ref_grads = jax.value_and_grad(loss)(mha, q, kv, mask)
        with jax.set_mesh(mesh):
            step_loss, grads = jax.jit(jax.value_and_grad(loss))(sharded, q, kv, mask)
            np.testing.assert_allclose(step_loss, ref_loss, rtol=1e-5)
            for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ref_grads)[0],
                                    jax.tree.leaves(grads)):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, err_msg=name_of(path))
            opt = optim.Adam(sharded.parameters(), lr=1e-2)
            stepped, opt = jax.jit(lambda m, o, g: o.step(m, g))(sharded, opt, grads)
        for path, leaf in jax.tree_util.tree_flatten_with_path(stepped)[0]:
            assert leaf.sharding.spec == spec(name_of(path)), (name_of(path), leaf.sharding)
        print("ok", kdim)
    """
)


def test_attention_sharded_by_heads_matches_unsharded() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "None", "ok", "6"]
