"""Train a small ResNet on scikit-learn's bundled digits (no download): >= 99 % held-out.

The 8x8 grey-level digits, upscaled to 16x16 by pixel repetition (nearest neighbour) and
standardised with the training set's mean and std, as (N, 1, 16, 16) images (torch's NCHW
layout); 10 classes, a stratified 80/20 split with a fixed seed. The network is torchvision's
ResNet, written as it is there (``BasicBlock`` with its ``downsample`` ``Sequential``,
``BatchNorm2d``, ``MaxPool2d(3, 2, 1)`` after the stem, ``AdaptiveAvgPool2d((1, 1))``, then
``flatten``), three stages of two blocks at widths 16, 32, 64 and a 3x3 stride-1 stem for the
small images. The train step is the README's jitted step: ``fparam.value_and_grad`` and
``opt.step``, which carries the BatchNorm running statistics out; random shifts of up to two
pixels are drawn outside it, and a cosine learning-rate schedule steps once per epoch at top
level, as in torch. ``model.eval()`` switches to the running statistics for the accuracies.
It prints the held-out accuracy and saves the loss and accuracy curves as a PNG. The same script
runs unchanged on CPU or GPU.

Run: ``python examples/resnet_digits.py [--epochs 20] [--out examples/out]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import fparam
from fparam import nn, optim
from fparam.nn import functional as F


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's block: two 3x3 convolutions and a shortcut, each convolution batch-normed."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: jax.Array) -> jax.Array:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """16x16 -> stem 3x3 conv-BN-ReLU -> MaxPool2d(3, 2, 1) (8x8) -> 3 stages (8, 4, 2) -> fc."""

    def __init__(
        self, layers: tuple[int, ...] = (2, 2, 2), width: int = 16, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.Sequential(
            *[
                self._make_layer(width * 2**i, blocks, stride=1 if i == 0 else 2)
                for i, blocks in enumerate(layers)
            ]
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: jax.Array) -> jax.Array:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(F.flatten(x, 1))  # torch: torch.flatten(x, 1)


def load_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, 1, 16, 16) float32 images (each pixel repeated 2x2), standardised with the training
    set's mean and std."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x = x.repeat(2, axis=2).repeat(2, axis=3)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


@jax.jit
def random_shift(key: jax.Array, images: jax.Array, fill: float) -> jax.Array:
    """Shift each image by -2 to 2 pixels along each axis; ``fill`` enters at the border."""
    n, c, h, w = images.shape
    padded = jnp.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=fill)
    shifts = jax.random.randint(key, (n, 2), 0, 5)

    def crop(image: jax.Array, shift: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (0, shift[0], shift[1]), (c, h, w))

    return jax.vmap(crop)(padded, shifts)


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["train_loss"], marker=".", label="train, train mode (epoch mean)")
    ax_loss.set_yscale("log")  # the first epochs and the last ones on one axis
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (log scale)")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    ax_acc.plot(epochs, history["train_acc"], marker=".", label="train images, eval mode")
    final = history["test_acc"][-1]
    ax_acc.plot(
        epochs, history["test_acc"], marker=".", label=f"held-out, eval mode (final {final:.3f})"
    )
    ax_acc.set_ylim(0.0, 1.0)  # the full range: nothing hidden below a floor
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy (evaluation mode: running statistics)")
    ax_acc.legend(loc="lower right")
    fig.suptitle("fparam ResNet (BasicBlock, BatchNorm2d, MaxPool2d) on scikit-learn digits")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.1,
    out: str = "examples/out",
    max_batches: int | None = None,
    seed: int = 0,
    width: int = 16,
) -> dict[str, list[float]]:
    fparam.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_images(seed)
    background = float(x_train.min())  # a blank pixel after standardisation
    model = ResNet(width=width)
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    # Per epoch, at top level as in torch: the lr is a leaf, a new value never recompiles.
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    @jax.jit
    def train_step(model, opt, x, y):
        loss, grads = fparam.value_and_grad(lambda m: criterion(m(x), y))(model)
        model, opt = opt.step(model, grads)  # carries the new running statistics too
        return model, opt, loss

    predict = jax.jit(lambda m, x: m(x))

    def accuracy(model: ResNet, x: np.ndarray, y: np.ndarray) -> float:
        return float(jnp.mean(jnp.argmax(predict(model, x), axis=1) == y))

    history: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "test_acc": []}
    rng = np.random.default_rng(seed)
    shift_key = jax.random.key(seed + 1)
    steps_per_epoch = len(x_train) // batch_size
    step = 0
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="epochs", disable=None):
        model.train()
        order = rng.permutation(len(x_train))
        losses = []
        batches = range(
            steps_per_epoch if max_batches is None else min(max_batches, steps_per_epoch)
        )
        for b in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=None):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = random_shift(jax.random.fold_in(shift_key, step), x_train[idx], background)
            model, opt, loss = train_step(model, opt, x, y_train[idx])
            losses.append(loss)
            step += 1
        opt = schedule.step(opt)
        history["train_loss"].append(float(np.mean(jax.device_get(losses))))
        model.eval()  # running statistics; a second compiled program, kept
        history["train_acc"].append(accuracy(model, x_train, y_train))
        history["test_acc"].append(accuracy(model, x_test, y_test))
    elapsed = time.perf_counter() - start

    test_acc = history["test_acc"][-1]
    errors = round((1.0 - test_acc) * len(x_test))
    print(f"device: {jax.devices()[0].platform}; {step} steps in {elapsed:.1f} s")
    print(f"parameters: {sum(p.size for p in model.parameters())}")
    print(f"final train loss {history['train_loss'][-1]:.4f}")
    print(f"batches tracked by the stem's BatchNorm: {int(model.bn1.num_batches_tracked)}")
    print(f"held-out accuracy: {test_acc:.4f} ({errors} errors in {len(x_test)} images)")
    path = Path(out) / "resnet_digits_curves.png"
    save_curves(history, path)
    print(f"curves saved to {path}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.out)
