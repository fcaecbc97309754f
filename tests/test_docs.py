"""The documentation's code runs, and its coverage table matches what fparam defines.

* Every ```python block of docs/porting-from-pytorch.md, README.md and docs/distributed.md
  runs, in order, in one namespace per file (the blocks assert what the text claims).
* A block marked ``<!-- pending: ... -->`` (on the line before it) documents behaviour that is
  still being built: it must fail today. When it starts passing, remove the marker.
* The "in fparam" column of the coverage tables names exactly the torch names fparam defines, and
  no "not yet" entry is defined by fparam.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import jax
import pytest

import fparam.nn.functional
import fparam.optim.lr_scheduler
from fparam import _torch_names

ROOT = Path(__file__).resolve().parent.parent
PORTING = ROOT / "docs" / "porting-from-pytorch.md"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S)


def _blocks(path: Path) -> list[tuple[int, str, bool]]:
    """(line, code, pending) for each python block; pending when the line above marks it."""
    text = path.read_text()
    return [
        (
            text.count("\n", 0, m.start("code")) + 1,
            m.group("code"),
            m.group("before").startswith("<!-- pending:"),
        )
        for m in BLOCK.finditer(text)
    ]


@pytest.mark.parametrize(
    "path", [PORTING, ROOT / "README.md", ROOT / "docs" / "distributed.md"], ids=lambda p: p.name
)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    blocks = _blocks(path)
    assert blocks
    namespace: dict = {"__name__": "__docs__"}
    # A reader runs these with JAX's default promotion rules, not the suite's strict ones (optax's
    # Adam mixes a Python float with its int32 step count).
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        _run(path, blocks, namespace)


def _run(path: Path, blocks: list[tuple[int, str, bool]], namespace: dict) -> None:
    for line, code, pending in blocks:
        if pending:
            # Run on a copy, so that a half-run pending block leaves the namespace as it was.
            scratch = dict(namespace)
            try:
                exec(compile(code, f"{path.name}:{line}", "exec"), scratch)
            except (AssertionError, AttributeError, TypeError):
                continue
            pytest.fail(f"{path.name}:{line}: the pending block now passes; remove its marker")
        exec(compile(code, f"{path.name}:{line}", "exec"), namespace)


def _coverage_columns() -> tuple[set[str], set[str]]:
    """Backticked names in the 'in fparam' and 'not yet' columns of section 2's tables."""
    text = PORTING.read_text()
    section = text.split("\n## 2. Coverage", 1)[1].split("\n## 3.", 1)[0]
    have: set[str] = set()
    lacking: set[str] = set()
    for row in section.splitlines():
        cells = row.split("|")[1:-1]
        if len(cells) < 3 or set(cells[0].strip()) <= {"-"}:
            continue
        for names, column in ((have, cells[1]), (lacking, cells[2])):
            for word in re.findall(r"`([^`]+)`", column):
                # `MaxPool1d/2d/3d` names three classes; `Lazy*` and `nn.utils` are families.
                stem = re.match(r"^(\w+?)(\d\w)((?:/\d\w)+)$", word)
                if stem:
                    names.update(stem[1] + s for s in [stem[2], *stem[3].split("/")[1:]])
                elif re.fullmatch(r"\w+", word):
                    names.add(word)
    return have, lacking


MODULES = [
    (fparam.nn, _torch_names.NN),
    (fparam.nn.functional, _torch_names.FUNCTIONAL),
    (fparam.optim, _torch_names.OPTIM),
    (fparam.optim.lr_scheduler, _torch_names.LR_SCHEDULER),
]


def test_coverage_table_lists_exactly_what_fparam_defines():
    defined = {
        name
        for module, names in MODULES
        for name in names & vars(module).keys()
        if not isinstance(vars(module)[name], types.ModuleType)
    }
    have, _ = _coverage_columns()
    assert have - defined == set(), "listed as 'in fparam' but not defined"
    assert defined - have == set(), "defined by fparam but missing from the coverage table"


def test_coverage_table_not_yet_entries_are_torch_names_fparam_lacks():
    _, lacking = _coverage_columns()
    assert len(lacking) >= 10  # the parser found the column (25 names as of the layers issue)
    torch_names = set().union(*(names for _, names in MODULES))
    assert lacking - torch_names == set(), "not a torch name (typo in the table?)"
    defined = {n for module, _ in MODULES for n in lacking & vars(module).keys()}
    assert defined == set(), "now defined by fparam: move it to the 'in fparam' column"
