"""The example scripts run end to end (a few steps each) and do what they claim."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    if str(EXAMPLES) not in sys.path:  # the CNN example reuses the MLP example's data loading
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_parameter_vs_array_trains_only_the_parameter(capsys):
    example = _load("parameter_vs_array")
    before = example.M()
    model, losses = example.main(epochs=3)
    out = capsys.readouterr().out
    assert "parameters: ['weights1']" in out
    assert "Parameter containing" in out
    assert not np.allclose(np.asarray(model.weights1), np.asarray(before.weights1))
    np.testing.assert_array_equal(np.asarray(model.weights2), np.asarray(before.weights2))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["train_digits", "train_digits_cnn"])
def test_digits_classifier_examples_run_a_few_batches(name, tmp_path):
    example = _load(name)
    history = example.main(epochs=2, max_batches=3, out=str(tmp_path))
    assert len(history["test_acc"]) == 2
    assert all(0.0 <= acc <= 1.0 for acc in history["test_acc"])
    assert (tmp_path / f"{name}_curves.png").stat().st_size > 0


def test_autoencoder_example_runs_a_few_batches(tmp_path):
    example = _load("digits_autoencoder")
    history = example.main(epochs=2, max_batches=5, out=str(tmp_path))
    assert len(history["test_mse"]) == 2
    assert all(np.isfinite(history["test_mse"]))
    assert history["test_mse"][-1] < 0.2  # pixels are in [0, 1]
    assert (tmp_path / "digits_autoencoder.png").stat().st_size > 0
