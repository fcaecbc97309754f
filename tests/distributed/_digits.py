"""The digits CNN and data the multi-device training tests share (imported by their children).

examples/train_digits_sharded.py's model, narrower; scikit-learn's digits read from the file it
ships (importing sklearn costs 2 s of CPU in every child).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from fparam import nn


class CNN(nn.Module):
    def __init__(self, width: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` digits: normalised ``(count, 1, 8, 8)`` images and int32 labels."""
    root = importlib.util.find_spec("sklearn").submodule_search_locations[0]
    rows = np.loadtxt(
        os.path.join(root, "datasets", "data", "digits.csv.gz"), delimiter=",", dtype=np.float32
    )[:count]
    images = ((rows[:, :64] / 16.0 - 0.3) / 0.4).reshape(-1, 1, 8, 8)
    return images, rows[:, 64].astype(np.int32)
