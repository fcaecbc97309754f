"""A torch name fparam does not define yet says so; any other missing name is a plain typo.

The lists in ``fparam/_torch_names.py`` are hard-coded (fparam never imports torch); the tests
below check them against the installed torch, both ways, so they cannot rot.
"""

from __future__ import annotations

import inspect
import types

import jax.numpy as jnp
import pytest
import torch
import torch.nn.functional
import torch.optim.lr_scheduler

import fparam.nn.functional
import fparam.optim.lr_scheduler
from fparam import _torch_names, nn, optim

# (fparam module, the torch module it mirrors, fparam's list of that torch module's names)
MODULES = [
    (fparam.nn, torch.nn, _torch_names.NN),
    (fparam.nn.functional, torch.nn.functional, _torch_names.FUNCTIONAL),
    (fparam.optim, torch.optim, _torch_names.OPTIM),
    (fparam.optim.lr_scheduler, torch.optim.lr_scheduler, _torch_names.LR_SCHEDULER),
]
IDS = [fp.__name__ for fp, _, _ in MODULES]

# torch.nn.functional's public namespace also holds helpers that are not part of its API.
FUNCTIONAL_HELPERS = {
    "Optional",
    "assert_int_or_pair",
    "boolean_dispatch",
    "handle_torch_function",
    "has_torch_function",
    "has_torch_function_unary",
    "has_torch_function_variadic",
}


def _torch_names_by_rule(torch_module: types.ModuleType) -> set[str]:
    """The rule each list in fparam/_torch_names.py is written down from (see its docstring)."""
    public = {n: getattr(torch_module, n) for n in dir(torch_module) if not n.startswith("_")}
    if torch_module is torch.nn:
        return {n for n, v in public.items() if inspect.isclass(v)} | {
            "attention",
            "parallel",
            "utils",
        }
    if torch_module is torch.nn.functional:
        return {
            n
            for n, v in public.items()
            if callable(v) and not inspect.isclass(v) and n not in FUNCTIONAL_HELPERS
        }
    return set(torch_module.__all__)


def _python_message(module_name: str, name: str) -> str:
    """The message Python itself gives for a missing attribute of a module without __getattr__."""
    with pytest.raises(AttributeError) as info:
        getattr(types.ModuleType(module_name), name)
    return str(info.value)


@pytest.mark.parametrize(("fp", "tm", "names"), MODULES, ids=IDS)
def test_every_listed_name_exists_in_torch(fp, tm, names):
    missing = sorted(n for n in names if not hasattr(tm, n))
    assert not missing, f"{tm.__name__} (torch {torch.__version__}) has no {missing}"


@pytest.mark.parametrize(("fp", "tm", "names"), MODULES, ids=IDS)
def test_every_torch_name_is_listed(fp, tm, names):
    unlisted = sorted(_torch_names_by_rule(tm) - names)
    assert not unlisted, f"add {unlisted} to fparam/_torch_names.py"


@pytest.mark.parametrize(("fp", "tm", "names"), MODULES, ids=IDS)
def test_listed_names_fparam_lacks_say_not_implemented_yet(fp, tm, names):
    undefined = sorted(n for n in names if n not in vars(fp))
    assert undefined  # every one of these modules still lacks some torch names
    for name in undefined:
        with pytest.raises(AttributeError) as info:
            getattr(fp, name)
        message = str(info.value)
        assert f"{tm.__name__}.{name} is not implemented yet in fparam" in message
        assert message.startswith(f"module {fp.__name__!r} has no attribute {name!r}")
        assert "docs/porting-from-pytorch.md" in message
        assert info.value.name == name
        assert not hasattr(fp, name)
        assert getattr(fp, name, None) is None


@pytest.mark.parametrize(("fp", "tm", "names"), MODULES, ids=IDS)
def test_names_fparam_defines_resolve_to_its_own_objects(fp, tm, names):
    defined = sorted(n for n in names if n in vars(fp))
    assert defined
    for name in defined:
        assert getattr(fp, name) is vars(fp)[name]
    for name in fp.__all__:
        assert getattr(fp, name) is vars(fp)[name]


@pytest.mark.parametrize(
    ("fp", "typo"),
    [
        (fparam.nn, "MaxPol2d"),
        (fparam.nn, "Relu"),  # torch.nn has ReLU
        (fparam.nn.functional, "max_pool_2d"),
        (fparam.optim, "Adamm"),
        (fparam.optim, "StepLR"),  # in torch.optim.lr_scheduler, not torch.optim
        (fparam.optim.lr_scheduler, "StepLr"),
        (fparam.nn, "__wrapped__"),
    ],
)
def test_a_name_torch_lacks_too_gets_pythons_usual_error(fp, typo):
    with pytest.raises(AttributeError) as info:
        getattr(fp, typo)
    assert str(info.value) == _python_message(fp.__name__, typo)
    assert "not implemented" not in str(info.value)
    assert not hasattr(fp, typo)


def test_the_examples_from_the_issue():
    import fparam.nn.functional as F

    assert not hasattr(nn, "SyncBatchNorm")
    with pytest.raises(AttributeError, match=r"torch\.nn\.SyncBatchNorm is not implemented yet"):
        nn.SyncBatchNorm(2)
    with pytest.raises(AttributeError, match=r"functional\.conv_tbc is not implemented yet"):
        F.conv_tbc(jnp.ones((4, 1, 2)), jnp.ones((3, 2, 2)), jnp.ones(2))
    with pytest.raises(AttributeError, match=r"torch\.optim\.Adam is not implemented yet"):
        optim.Adam(nn.Linear(2, 3).parameters(), lr=1e-3)
    with pytest.raises(AttributeError, match=r"lr_scheduler\.OneCycleLR is not implemented yet"):
        _ = optim.lr_scheduler.OneCycleLR
    # What exists is unaffected.
    assert nn.Linear(2, 3).weight.shape == (3, 2)
    assert optim.SGD is fparam.optim.sgd.SGD


def test_from_import_of_a_missing_name_is_an_import_error():
    # Python turns any AttributeError of `from m import x` into its own ImportError (the message
    # above is lost there); the import still fails at once and names the missing name.
    with pytest.raises(ImportError, match="SyncBatchNorm"):
        from fparam.nn import SyncBatchNorm  # noqa: F401
