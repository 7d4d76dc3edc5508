"""Scores a PyTorch model with disentax's metrics, as its own results.

  python docs/examples/score_pytorch_model.py --workdir=runs/torch_vae \
      [--train_steps=200] [--image_size=32] [--num_seeds=3] \
      [--encoder=torch|numpy]

A small convolutional VAE in PyTorch is trained for a few steps on
procedural dSprites (batches from `GroundTruthDataset.batches`), then its
encoder, wrapped in a few lines (`torch_functions`), is scored with a small
battery on three evaluation seeds, on the posterior mean and on a sample of the posterior
(disentanglement_lib's "sampled" representation), and with the ELBO terms.
The results land in WORKDIR/results/ in disentax's schema, so
`disentax.load_results` and `python -m disentax.report --workdirs=WORKDIR`
read them like any run's.  `--encoder=numpy` scores a fixed random
projection instead, where PyTorch is not installed (`pip install torch`, or
disentax's `examples` extra).
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

import disentax
from disentax.data import make_dataset
from disentax.reporting.report import default_out, run_report

_WORKDIR = flags.DEFINE_string("workdir", os.path.join("runs", "torch_vae"),
                               "where the results are written")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 200, "VAE training steps")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "dSprites image size")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "evaluation seeds (members)")
_ENCODER = flags.DEFINE_enum("encoder", "torch", ["torch", "numpy"],
                             "the model scored")

NUM_LATENTS = 6
# A small battery, sized to run in seconds on a CPU (the default, "full",
# is every metric at disentanglement_lib's sizes).
BATTERY = {
    "mig": {"num_points": 2_000, "batch_size": 500},
    "factor_vae_score": {"num_train": 100, "num_eval": 50,
                         "num_variance_estimate": 2_000, "batch_size": 32},
    "sap": {"num_train": 500, "num_test": 250, "batch_size": 250,
            "n_jobs": 1},
    "elbo_decomposition": {"num_points": 500, "batch_size": 250},
}


def train_torch_vae(dataset, steps: int):
  """A conv VAE (two stride-2 convolutions, Gaussian posterior, Bernoulli
  decoder) trained with Adam on `steps` batches of 64."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  size = dataset.observation_shape[0]
  channels = dataset.observation_shape[2]
  flat = 32 * (size // 4) ** 2

  class VAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.encoder = nn.Sequential(
          nn.Conv2d(channels, 16, 4, 2, 1), nn.ReLU(),
          nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
          nn.Linear(flat, 2 * NUM_LATENTS))
      self.decoder = nn.Sequential(
          nn.Linear(NUM_LATENTS, flat), nn.ReLU(),
          nn.Unflatten(1, (32, size // 4, size // 4)),
          nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
          nn.ConvTranspose2d(16, channels, 4, 2, 1))

    def encode(self, x):
      return self.encoder(x).chunk(2, dim=1)  # mean, logvar

    def negative_log_likelihood(self, z, x):
      return nn.functional.binary_cross_entropy_with_logits(
          self.decoder(z), x, reduction="none").sum((1, 2, 3))

  torch.manual_seed(0)
  model = VAE()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  for batch in dataset.batches(seed=0, batch_size=64, num_batches=steps):
    x = torch.from_numpy(batch.observations).permute(0, 3, 1, 2)
    mean, logvar = model.encode(x)
    z = mean + torch.exp(logvar / 2) * torch.randn_like(mean)
    kl = 0.5 * (mean ** 2 + logvar.exp() - logvar - 1).sum(1)
    loss = (model.negative_log_likelihood(z, x) + kl).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
  return model.eval()


def torch_functions(model):
  """The model as disentax calls it: numpy NHWC in, numpy out."""
  import torch  # pylint: disable=import-outside-toplevel

  def nchw(x: np.ndarray):
    return torch.from_numpy(x).permute(0, 3, 1, 2)

  def posterior_fn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
      mean, logvar = model.encode(nchw(x))
    return mean.numpy(), logvar.numpy()

  def reconstruction_error_fn(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
      mean, _ = model.encode(nchw(x))
      return model.negative_log_likelihood(mean, nchw(x)).numpy()

  return posterior_fn, reconstruction_error_fn


def numpy_functions(dataset):
  """A fixed random projection of the pixels to NUM_LATENTS codes, with a
  unit posterior variance, and no reconstruction (no ELBO terms)."""
  pixels = int(np.prod(dataset.observation_shape))
  weights = np.random.default_rng(0).normal(size=(pixels, NUM_LATENTS))

  def posterior_fn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.reshape(len(x), -1) @ weights / np.sqrt(pixels)
    return mean, np.zeros_like(mean)

  return posterior_fn, None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  dataset = make_dataset({"name": "dsprites", "image_size": _IMAGE_SIZE.value})
  if _ENCODER.value == "torch":
    model = train_torch_vae(dataset, _TRAIN_STEPS.value)
    posterior_fn, reconstruction_error_fn = torch_functions(model)
    battery, step = BATTERY, _TRAIN_STEPS.value
  else:
    posterior_fn, reconstruction_error_fn = numpy_functions(dataset)
    battery = {k: v for k, v in BATTERY.items() if k != "elbo_decomposition"}
    step = 0
  disentax.evaluate_representation(
      None, dataset, posterior_fn=posterior_fn,
      reconstruction_error_fn=reconstruction_error_fn, battery=battery,
      seeds=range(_NUM_SEEDS.value), representation=("mean", "sampled"),
      name=f"{_ENCODER.value}_vae", step=step,
      workdir=_WORKDIR.value)

  table = disentax.load_results(_WORKDIR.value)
  print(table[["seed", "metric.mig", "metric.mig_sampled",
               "metric.factor_vae_score"]].to_string(index=False))
  # What `python -m disentax.report --workdirs=WORKDIR --nofigures` writes.
  markdown, _ = run_report([_WORKDIR.value], default_out([_WORKDIR.value],
                                                         None),
                           metric="mig", threshold=0.1, figures=False)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
