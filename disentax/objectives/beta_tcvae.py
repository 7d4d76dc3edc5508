"""beta-TCVAE (Chen et al. 2018) and its reweightings, e.g. DEFT(TC).

Chen et al. eq. 4 weights the three terms of the KL's TC-decomposition
(see `disentax.objectives.total_correlation`):

  loss = recon + alpha * MI + beta * TC + gamma * DWKL

beta-TCVAE is alpha = gamma = 1 with beta swept; DEFT(TC) (DEFT arXiv eq. 7)
puts its pressure alpha on MI, beta on TC and 1 on DWKL -- the same objective
with other values (experiments/deft_tc.py), no code of its own.

Two forms, the same in expectation (`form`):

  'kl' (default, dlib-google):
      loss = recon + KL + (alpha - 1) MI + (beta - 1) TC + (gamma - 1) DWKL
    KL is the analytic Gaussian KL.  With alpha = gamma = 1 this is exactly
    dlib-google's beta-TCVAE, recon + KL + (beta - 1) TC.  Because the
    estimated MI + TC + DWKL equals mean_i [log q(z_i|x_i) - log p(z_i)]
    exactly, whose expectation over z is the analytic KL, this form has the
    expectation of eq. 4 for every alpha, beta, gamma.
  'decomposed' (eq. 4 read literally, as beta-tcvae-ref):
      loss = recon + alpha MI + beta TC + gamma DWKL
    every term a minibatch estimate; the KL enters only through its
    one-sample estimate MI + TC + DWKL.

dlib-google's TC drops the estimator's constant; ours keeps the
normalisation (its TC is ours - (d - 1) log M for MWS; see
total_correlation), so the 'kl' loss equals dlib-google's plus
(beta - 1)(d - 1) log M, a constant: identical gradients.
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping

import jax

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Objective, check_reconstruction,
                                      gaussian_kl, hyperparameter_grid,
                                      reconstruction_loss)
from disentax.objectives.total_correlation import check_estimator, decompose

FORMS = ("kl", "decomposed")


def beta_tcvae_loss(output: VAEOutput, x: jax.Array,
                    hparams: Mapping[str, jax.Array], step: jax.Array,
                    aux: None = None, *, estimator: str = "mws",
                    dataset_size: int | None = None, form: str = "kl",
                    reconstruction: str = "bernoulli"
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch-mean loss of one member (its alpha, beta, gamma in `hparams`)."""
  del step, aux
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  kl = gaussian_kl(output.mean, output.logvar).sum(axis=1).mean()
  terms = decompose(output.z, output.mean, output.logvar, estimator,
                    dataset_size)
  alpha, beta, gamma = hparams["alpha"], hparams["beta"], hparams["gamma"]
  if form == "kl":
    loss = (recon + kl + (alpha - 1.0) * terms.mi + (beta - 1.0) * terms.tc
            + (gamma - 1.0) * terms.dwkl)
  elif form == "decomposed":
    loss = recon + alpha * terms.mi + beta * terms.tc + gamma * terms.dwkl
  else:
    raise ValueError(f"beta_tcvae form {form!r}; allowed: {FORMS}")
  return loss, {"loss": loss, "recon": recon, "kl": kl, "mi": terms.mi,
                "tc": terms.tc, "dwkl": terms.dwkl}


@OBJECTIVES.register("beta_tcvae")
def beta_tcvae(alpha: float | Iterable[float] = 1.0,
               beta: float | Iterable[float] = 1.0,
               gamma: float | Iterable[float] = 1.0,
               estimator: str = "mws", form: str = "kl",
               reconstruction: str = "bernoulli",
               dataset_size: int | None = None) -> Objective:
  """alpha (MI), beta (TC), gamma (DWKL): one value or a grid each (>= 0).

  `estimator`: 'mws' (dlib-google) or 'mss' (needs `dataset_size`, which
  disentax passes from the dataset).  `form`: 'kl' (dlib-google) or
  'decomposed' (see the module docstring).
  """
  check_estimator(estimator, dataset_size)
  if form not in FORMS:
    raise ValueError(f"config.objective.form={form!r}; allowed: {FORMS}")
  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name="beta_tcvae", reconstruction=reconstruction,
      loss=functools.partial(
          beta_tcvae_loss, estimator=estimator, dataset_size=dataset_size,
          form=form, reconstruction=reconstruction),
      hyperparameters={
          name: hyperparameter_grid(name, value, non_negative=True)
          for name, value in (("alpha", alpha), ("beta", beta),
                              ("gamma", gamma))})
