"""The standard architecture and beta-VAE loss in PyTorch: the baseline of
the `train_step` benchmark (`python -m disentax.bench --items=train_step`).

It is written the way a PyTorch user would write dlib-google's model, so the
comparison is with idiomatic PyTorch (NCHW, `nn.Conv2d`,
`nn.ConvTranspose2d`, `torch.optim.Adam`), not with a port of disentax's fast
kernels.  `load_flax_params` copies one disentax member's parameters
into it, which lets tests/test_bench.py check that both compute the same
loss and gradients on the same batch and noise -- a speed comparison is only
meaningful between equal functions.

Layout differences handled by the loader (Flax: NHWC, HWIO kernels; torch:
NCHW, OIHW kernels):

* Conv kernels are transposed HWIO -> OIHW.  'SAME' padding in XLA pads
  `total = max((out - 1) * stride + k - in, 0)` with the smaller half first
  (top/left); `nn.Conv2d` only pads symmetrically, so an odd total is padded
  explicitly with `F.pad` (the standard (4, 4, 2, 2) kernels on even sides
  always pad symmetrically).
* Dense layers next to a flatten/reshape see features in (h, w, c) order in
  Flax and (c, h, w) in torch: their weight rows/columns are permuted.
* `lax.conv_transpose(..., (2, 2), 'SAME')` (transpose_kernel False) is a
  correlation of the 2x-dilated input, padded by 2 on each side for a 4x4
  kernel, with the kernel as stored; `nn.ConvTranspose2d(4, stride 2,
  padding 1)` pads by k - 1 - 1 = 2 as well but correlates with the
  spatially flipped kernel, so the kernel is flipped and laid out [in, out,
  kh, kw].
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from disentax.models.conv import (DECODER_CHANNELS, DOWNSAMPLING,
                                  ENCODER_CHANNELS)

HIDDEN = 256
UPSAMPLE_KERNEL = 4


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(before, after) padding of XLA's 'SAME' for one spatial axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class TorchConvVAE(nn.Module):
  """dlib-google's conv VAE (disentax `conv_vae`, standard encoder):
  conv 32, 32, 64, 64 (stride 2, 'SAME'), dense 256, Gaussian heads; dense
  256, dense to (S/16)^2 x 64, four 4x4 stride-2 transposed convs
  64, 32, 32, C -> Bernoulli logits.  ReLU throughout.  NCHW."""

  def __init__(self, image_size: int = 64, channels: int = 1,
               num_latents: int = 10,
               kernel_sizes: Sequence[int] = (4, 4, 2, 2)):
    super().__init__()
    self.side = image_size // DOWNSAMPLING
    self.convs = nn.ModuleList()
    self.pads: list[tuple[int, int, int, int] | None] = []
    size, cin = image_size, channels
    for features, k in zip(ENCODER_CHANNELS, kernel_sizes):
      before, after = same_padding(size, k, 2)
      symmetric = before == after
      self.convs.append(nn.Conv2d(cin, features, k, stride=2,
                                  padding=before if symmetric else 0))
      # F.pad order: (left, right, top, bottom); equal for both axes.
      self.pads.append(None if symmetric else (before, after, before, after))
      size, cin = -(-size // 2), features
    if size != self.side:
      raise ValueError(f"image_size {image_size}: the encoder ends at "
                       f"{size}x{size}, the decoder starts at {self.side}")
    self.encoder_hidden = nn.Linear(size * size * cin, HIDDEN)
    self.mean = nn.Linear(HIDDEN, num_latents)
    self.logvar = nn.Linear(HIDDEN, num_latents)
    self.decoder_hidden = nn.Linear(num_latents, HIDDEN)
    self.decoder_map = nn.Linear(HIDDEN, self.side * self.side * 64)
    channels_in = (64, *DECODER_CHANNELS)
    channels_out = (*DECODER_CHANNELS, channels)
    self.upsamples = nn.ModuleList(
        nn.ConvTranspose2d(a, b, UPSAMPLE_KERNEL, stride=2, padding=1)
        for a, b in zip(channels_in, channels_out))

  def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [b, C, S, S] -> (mean, log-variance) [b, num_latents]."""
    for conv, pad in zip(self.convs, self.pads):
      if pad is not None:
        x = F.pad(x, pad)
      x = F.relu(conv(x))
    x = F.relu(self.encoder_hidden(x.flatten(1)))
    return self.mean(x), self.logvar(x)

  def decode(self, z: torch.Tensor) -> torch.Tensor:
    """Latents [b, num_latents] -> logits [b, C, S, S]."""
    x = F.relu(self.decoder_hidden(z))
    x = F.relu(self.decoder_map(x)).view(z.shape[0], 64, self.side, self.side)
    for upsample in self.upsamples[:-1]:
      x = F.relu(upsample(x))
    return self.upsamples[-1](x)

  def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, ...]:
    """(mean, logvar, z, logits); `noise` (standard normal [b, d]) is drawn
    here unless given (tests pass disentax's noise)."""
    mean, logvar = self.encode(x)
    if noise is None:
      noise = torch.randn_like(mean)
    z = mean + torch.exp(0.5 * logvar) * noise
    return mean, logvar, z, self.decode(z)


def beta_vae_loss(outputs: tuple[torch.Tensor, ...], x: torch.Tensor,
                  beta: float) -> torch.Tensor:
  """Batch mean of (Bernoulli NLL summed over pixels) + beta * KL, as
  disentax's `beta_vae_loss` with reconstruction 'bernoulli'."""
  mean, logvar, _, logits = outputs
  batch = x.shape[0]
  recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
  kl = 0.5 * (mean.square() + logvar.exp() - logvar - 1.0).sum() / batch
  return recon + beta * kl


def make_optimizer(model: nn.Module, learning_rate: float = 1e-4
                   ) -> torch.optim.Optimizer:
  """Adam with dlib-google's settings (b1 .9, b2 .999, eps 1e-8)."""
  return torch.optim.Adam(model.parameters(), lr=learning_rate,
                          betas=(0.9, 0.999), eps=1e-8)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, beta: float) -> torch.Tensor:
  """One Adam step on batch `x` [b, C, S, S]; returns the (detached) loss."""
  optimizer.zero_grad(set_to_none=True)
  loss = beta_vae_loss(model(x), x, beta)
  loss.backward()
  optimizer.step()
  return loss.detach()


def torch_arrays_from_flax(params: Mapping[str, Any], image_size: int
                           ) -> dict[str, np.ndarray]:
  """One member's disentax `conv_vae` parameters (standard encoder, either
  `model.kernels`: they share parameters) as float32 arrays named
  and laid out as `TorchConvVAE.state_dict()`.  The map is a fixed
  permutation of entries, so it also carries gradients across."""
  side = image_size // DOWNSAMPLING
  enc, dec = params["encoder"], params["decoder"]
  arr = lambda leaf: np.asarray(leaf, np.float32)  # noqa: E731
  out: dict[str, np.ndarray] = {}
  for i in range(len(ENCODER_CHANNELS)):
    out[f"convs.{i}.weight"] = arr(enc[f"Conv_{i}"]["kernel"]).transpose(
        3, 2, 0, 1)
    out[f"convs.{i}.bias"] = arr(enc[f"Conv_{i}"]["bias"])
  kernel = arr(enc["Dense_0"]["kernel"])        # [(h, w, c), hidden]
  channels = kernel.shape[0] // (side * side)
  out["encoder_hidden.weight"] = kernel.reshape(
      side, side, channels, -1).transpose(3, 2, 0, 1).reshape(
          kernel.shape[1], -1)
  out["encoder_hidden.bias"] = arr(enc["Dense_0"]["bias"])
  for name in ("mean", "logvar"):
    out[f"{name}.weight"] = arr(enc[name]["kernel"]).T
    out[f"{name}.bias"] = arr(enc[name]["bias"])
  out["decoder_hidden.weight"] = arr(dec["Dense_0"]["kernel"]).T
  out["decoder_hidden.bias"] = arr(dec["Dense_0"]["bias"])
  kernel = arr(dec["Dense_1"]["kernel"])        # [hidden, (h, w, c)]
  out["decoder_map.weight"] = kernel.reshape(-1, side, side, 64).transpose(
      3, 1, 2, 0).reshape(-1, kernel.shape[0])
  out["decoder_map.bias"] = arr(dec["Dense_1"]["bias"]).reshape(
      side, side, 64).transpose(2, 0, 1).reshape(-1)
  for i in range(len(DECODER_CHANNELS) + 1):
    kernel = arr(dec[f"Upsample2x_{i}"]["kernel"])  # [kh, kw, in, out]
    out[f"upsamples.{i}.weight"] = np.ascontiguousarray(
        kernel[::-1, ::-1].transpose(2, 3, 0, 1))
    out[f"upsamples.{i}.bias"] = arr(dec[f"Upsample2x_{i}"]["bias"])
  return out


def load_flax_params(model: TorchConvVAE, params: Mapping[str, Any],
                     image_size: int) -> TorchConvVAE:
  """Copies one member's disentax parameters (e.g. `jax.tree.map(lambda p:
  p[m], state.params)`) into `model`, in place; returns it."""
  arrays = torch_arrays_from_flax(params, image_size)
  model.load_state_dict({k: torch.from_numpy(np.array(v, order="C"))
                         for k, v in arrays.items()}, strict=True)
  return model


def nchw(images: Any) -> torch.Tensor:
  """NHWC images (numpy or jax) -> a contiguous float32 NCHW torch tensor."""
  return torch.from_numpy(np.array(
      np.asarray(images, np.float32).transpose(0, 3, 1, 2), order="C"))
