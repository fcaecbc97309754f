"""A DCGAN that learns to draw digits: pytorch/examples' DCGAN on scikit-learn's digits.

The 1797 8x8 grey-level digits of scikit-learn (no download), scaled to [-1, 1] (the range of the
generator's ``Tanh``), as (N, 1, 8, 8) images. ``Generator`` and ``Discriminator`` are the
classes of pytorch/examples' ``dcgan/main.py`` (``ConvTranspose2d``-``BatchNorm2d``-``ReLU``
up to a ``Tanh``; ``Conv2d``-``BatchNorm2d``-``LeakyReLU`` down to a ``Sigmoid``; its
``weights_init`` through ``model.apply``), with three stages for 8x8 images instead of five for
64x64. Each iteration is that example's: a discriminator step on a real and a generated batch
(``BCELoss``), then a generator step through the updated discriminator, both in one jitted
function written in the README's pattern (``fparam.value_and_grad``, ``opt.step``, which carries
the BatchNorm running statistics out). Both networks train with the example's
``Adam(betas=(0.5, 0.999))``, at lr 1e-3 for these small images.

After each epoch it prints the losses and the discriminator's mean outputs, and saves a grid of
64 samples drawn from a fixed noise batch (``--out``); at the end, the loss curves. The same
script runs unchanged on CPU or GPU.

Run: ``python examples/dcgan_digits.py [--epochs 30] [--out examples/out]``
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
from tqdm import tqdm

import fparam
from fparam import nn, optim

nz, ngf, ndf, nc = 16, 32, 32, 1  # latent size, generator and discriminator widths, channels


def weights_init(m: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 4, 2, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. (ngf*4) x 2 x 2
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 4 x 4
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
            # state size. (nc) x 8 x 8
        )

    def forward(self, input: jax.Array) -> jax.Array:
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            # input is (nc) x 8 x 8
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 4 x 4
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 2 x 2
            nn.Conv2d(ndf * 2, 1, 2, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input: jax.Array) -> jax.Array:
        output = self.main(input)
        return output.reshape(-1, 1).squeeze(1)  # torch: output.view(-1, 1).squeeze(1)


def load_images() -> np.ndarray:
    """All 1797 digits as (N, 1, 8, 8) float32 images in [-1, 1] (ink is 1)."""
    return (load_digits().images / 8.0 - 1.0).astype(np.float32)[:, None]


criterion = nn.BCELoss()


@jax.jit
def train_step(netG, netD, optimizerG, optimizerD, real, noise):
    """One iteration of pytorch/examples' DCGAN loop; returns both networks, both optimizers
    and (errD, errG, D(x), D(G(z)) before and after the discriminator's update)."""
    real_label = jnp.ones(real.shape[0])
    fake_label = jnp.zeros(real.shape[0])

    # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z))). torch keeps the graph of
    # `fake` for (2); here (2) runs G again to differentiate it, so this run is made on a copy
    # of G that is dropped: G's running statistics count each batch once, as in torch.
    fake = fparam.stateful(lambda g: g(noise))(jax.tree.map(lambda a: a, netG))

    def d_loss(netD):
        output_real = netD(real)
        output_fake = netD(jax.lax.stop_gradient(fake))
        errD = criterion(output_real, real_label) + criterion(output_fake, fake_label)
        return errD, (output_real.mean(), output_fake.mean())

    (errD, (D_x, D_G_z1)), gradsD = fparam.value_and_grad(d_loss, has_aux=True)(netD)
    netD, optimizerD = optimizerD.step(netD, gradsD)

    # (2) Update G network: maximize log(D(G(z))). D runs in training mode here too, so its
    # running statistics move: it is differentiated as well, which carries them out.
    def g_loss(netG, netD):
        output = netD(netG(noise))
        return criterion(output, real_label), output.mean()

    (errG, D_G_z2), (gradsG, _) = fparam.value_and_grad(g_loss, argnums=(0, 1), has_aux=True)(
        netG, netD
    )
    netG, optimizerG = optimizerG.step(netG, gradsG)
    return netG, netD, optimizerG, optimizerD, (errD, errG, D_x, D_G_z1, D_G_z2)


@jax.jit
def sample(netG: Generator, noise: jax.Array) -> jax.Array:
    """Images in [-1, 1] from ``noise``, with ``netG`` as it is (call ``netG.eval()`` first for
    the running statistics)."""
    return netG(noise)


def save_grid(images: np.ndarray, epoch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(8, 8, figsize=(5, 5.4))
    for ax, image in zip(axes.flat, images):
        ax.imshow(image[0], cmap="gray_r", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"DCGAN samples after epoch {epoch} (fixed noise)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss_D"]) + 1)
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["loss_D"], marker=".", label="discriminator (real + fake)")
    ax_loss.plot(epochs, history["loss_G"], marker=".", label="generator")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("BCE loss (epoch mean)")
    ax_loss.set_title("losses")
    ax_loss.legend()
    ax_d.plot(epochs, history["D_x"], marker=".", label="D(x), real digits")
    ax_d.plot(epochs, history["D_G_z"], marker=".", label="D(G(z)), generated")
    ax_d.set_ylim(0.0, 1.0)
    ax_d.set_xlabel("epoch")
    ax_d.set_ylabel("mean discriminator output")
    ax_d.set_title("discriminator outputs")
    ax_d.legend()
    fig.suptitle("fparam DCGAN on scikit-learn digits")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    out: str = "examples/out",
    seed: int = 0,
) -> tuple[Generator, dict[str, list[float]]]:
    fparam.manual_seed(seed)
    images = load_images()
    netG, netD = Generator(), Discriminator()
    netG.apply(weights_init)
    netD.apply(weights_init)
    optimizerG = optim.Adam(netG.parameters(), lr=lr, betas=(0.5, 0.999))
    optimizerD = optim.Adam(netD.parameters(), lr=lr, betas=(0.5, 0.999))

    rng = np.random.default_rng(seed)
    fixed_noise = rng.standard_normal((64, nz, 1, 1)).astype(np.float32)
    history: dict[str, list[float]] = {"loss_D": [], "loss_G": [], "D_x": [], "D_G_z": []}
    steps_per_epoch = len(images) // batch_size
    start = time.perf_counter()
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=None):
        netG.train()
        netD.train()
        order = rng.permutation(len(images))
        stats = []
        for b in range(steps_per_epoch):
            real = images[order[b * batch_size : (b + 1) * batch_size]]
            noise = rng.standard_normal((batch_size, nz, 1, 1)).astype(np.float32)
            netG, netD, optimizerG, optimizerD, step_stats = train_step(
                netG, netD, optimizerG, optimizerD, real, noise
            )
            stats.append(step_stats)
        errD, errG, D_x, D_G_z1, D_G_z2 = np.mean(jax.device_get(stats), axis=0)
        history["loss_D"].append(float(errD))
        history["loss_G"].append(float(errG))
        history["D_x"].append(float(D_x))
        history["D_G_z"].append(float(D_G_z1))
        print(
            f"[{epoch}/{epochs}] Loss_D: {errD:.4f} Loss_G: {errG:.4f} "
            f"D(x): {D_x:.4f} D(G(z)): {D_G_z1:.4f} / {D_G_z2:.4f}"
        )
        netG.eval()
        save_grid(
            np.asarray(sample(netG, fixed_noise)),
            epoch,
            Path(out) / f"dcgan_digits_epoch{epoch:03d}.png",
        )
    elapsed = time.perf_counter() - start
    print(
        f"device: {jax.devices()[0].platform}; {epochs * steps_per_epoch} steps in {elapsed:.1f} s"
    )
    path = Path(out) / "dcgan_digits_losses.png"
    save_curves(history, path)
    print(f"samples and curves saved under {Path(out)}")
    return netG, history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default=os.environ.get("FPARAM_EXAMPLES_OUT", "examples/out"))
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.out)
