"""DEFT (Wu et al., "DEFT: distilling entangled factors by preventing
information diffusion", Machine Learning 2022; arXiv 2021): multi-stage
training that distils factors into groups of latents in order of their
information freezing points.

The G * K latents form G groups of K (latent j is in group j // K; with the
fractional encoder, group g is sub-encoder g).  Training has G stages; in
stage j (journal Algorithm 1, section 4.2):

  * the base objective's pressure (beta for beta-VAE, alpha for DEFT(TC),
    arXiv eq. 7) is pressures[j]: the piecewise pressure;
  * groups older than j still learn, but the gradient flowing back into their
    mean/log-variance outputs is scaled by gamma (default 0.1; dlib-deft
    scales exactly there, so every parameter of an old sub-encoder receives
    gamma times its unscaled gradient);
  * groups not yet reached output zeros (mean 0, log-variance 0, z 0), so
    they cost no KL, feed the decoder nothing and receive zero gradient.

The stage is computed from the traced step and the gate is data for the
model (`models.vae.LatentGate`), so the whole multi-stage run is one
compiled program, and the pressures and gamma are per-member hyperparameters
(a grid of pressure sequences and gammas trains as one program).

Where gamma acts (`scaling`):

  'gradient' (default; the journal and dlib-deft) scales the gradient
    flowing into old groups' outputs.  Adam normalises each parameter's
    update by its running gradient RMS, so that factor shrinks an old
    group's updates only until the second-moment estimate adapts, a few
    hundred steps after the stage switch (BUILD_NOTES).
  'update' keeps the journal's stages (future groups output zeros) but
    scales the optimiser's updates of old groups' parameters by gamma, the
    arXiv paper's "old encoders learn at gamma x the learning rate", which
    Adam cannot undo.  It is not the arXiv Algorithm 1 as printed (next).
  'arxiv_algorithm1' is arXiv Algorithm 1 as printed: every group encodes
    and feeds the decoder from the first step (no gate), and in stage j
    the updates of every sub-encoder but j, older and newer ones alike, are
    scaled by gamma; the decoder and sub-encoder j learn at the full rate.
  'fork_frozen_projection' is the DEFT authors' fork after 2022-08-17
    (dlib-deft's fractional encoder with projections and its `deft`
    regularizer): in stage j, sub-encoders older than j are frozen (update
    x 0: their parameters stay bitwise unchanged) and their outputs pass,
    under stop_gradient, through the model's learnable projection (mean x
    exp(W1); log-variance + W2, or x exp(W2) in the fork's other form:
    `config.model.latent_projection`, models.vae.LatentProjection), so only
    W1 and W2 of old groups learn; sub-encoder j trains as it is;
    sub-encoders not yet reached output zeros.  gamma has no role.

The two update-scaling modes need a model whose encoder has one parameter
group per stage (the fractional encoder's stacked sub-encoders), and the
model scales them (`scale_parameter_groups`).

Stages and groups in 'fork_frozen_projection'.  The stage is the same
function of the step as in every mode (the fork's min(step // N, S - 1)
over S pressures) and it picks a sub-encoder: the groups are the
encoder's G sub-encoders, whatever S is.  With G > S the last G - S
sub-encoders never open: the fork's 2023 dSprites config (5 sub-encoders,
4 pressures) keeps sub-encoder 4's latents at zero for the whole run (the
fork's regularizer caps the stage at S - 1).  With G < S, from stage G on
every sub-encoder is frozen and only the projections and the decoder learn
(the fork caps its encoder's stage at G).  The fork switches its encoder
one step after the pressure (its regularizer sets the stage after that
step's forward pass); here both switch at the stage's first step.

DEFT steers the model (its stage gate) and trains on uniform batches, so its
base must be a plain objective: one without a model control or a batch
sampler of its own.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from disentax import schedules
from disentax.models import LatentGate, LatentVariableModel, VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (AuxState, Objective, StagedControl,
                                      hyperparameter_grid, sequence_grid)

# The DEFT authors' fork after 2022-08-17: frozen old sub-encoders, a
# learnable projection of their outputs.
FORK = "fork_frozen_projection"
SCALINGS = ("gradient", "update", "arxiv_algorithm1", FORK)
# Scalings that scale the optimiser updates of the encoder's groups by gamma.
UPDATE_SCALINGS = ("update", "arxiv_algorithm1")
# The base of plain DEFT; methods around another base are named deft_<base>.
DEFAULT_BASE = "beta_vae"


def stage_boundaries(stage_steps: int | Sequence[int],
                     num_stages: int) -> tuple[int, ...]:
  """The steps at which stages 1..G-1 begin: every `stage_steps` steps, or
  after each of the given per-stage lengths (the last stage runs to the end
  of training)."""
  if isinstance(stage_steps, Iterable):
    lengths = tuple(stage_steps)
    if len(lengths) not in (num_stages - 1, num_stages):
      raise ValueError(
          f"config.objective.stage_steps={lengths}: give one length per "
          f"stage ({num_stages}; the last may be omitted) or one number")
  else:
    lengths = (stage_steps,) * (num_stages - 1)
  bad = [n for n in lengths
         if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1]
  if bad:
    raise ValueError(f"config.objective.stage_steps={stage_steps!r}: "
                     f"length(s) {bad} not allowed; must be integers >= 1")
  return tuple(int(b) for b in np.cumsum(lengths[:num_stages - 1]))


def deft_stage(step: jax.Array, boundaries: Sequence[int]) -> jax.Array:
  return schedules.stage_index(step, boundaries).astype(jnp.int32)


def latent_groups(num_latents: int, num_groups: int) -> jax.Array:
  """[num_latents] the group of each latent: latent j is in group j // K."""
  return jnp.arange(num_latents) // (num_latents // num_groups)


def deft_gate(stage: jax.Array, gamma: jax.Array, num_latents: int,
              num_groups: int) -> LatentGate:
  """Groups < stage: gradient x gamma; group == stage: x 1; groups > stage:
  output zeros (their gradient is then exactly zero)."""
  group = latent_groups(num_latents, num_groups)
  keep = (group <= stage).astype(jnp.float32)
  grad_scale = jnp.where(group < stage, jnp.asarray(gamma, jnp.float32), 1.0)
  return LatentGate(keep, grad_scale)


def fork_gate(stage: jax.Array, num_latents: int,
              num_groups: int) -> LatentGate:
  """The fork's fractional encoder in `stage`: sub-encoders < stage pass
  their frozen outputs through the projection; == stage: as they are;
  > stage: zeros.  No gradient is scaled."""
  group = latent_groups(num_latents, num_groups)
  return LatentGate(keep=(group <= stage).astype(jnp.float32),
                    grad_scale=jnp.ones(num_latents, jnp.float32),
                    project=(group < stage).astype(jnp.float32))


def check_fork_model(encoder_groups: int | None,
                     latent_projection: str) -> int:
  """The fork's mode freezes sub-encoders and projects their outputs: it
  needs the fractional encoder and a model with a projection.  Returns the
  number of sub-encoders."""
  missing = [text for text, absent in (
      ("config.model.encoder='fractional'", encoder_groups is None),
      ("config.model.latent_projection='logvar_shift' (or 'logvar_scale')",
       latent_projection == "none")) if absent]
  if missing:
    raise ValueError(
        f"config.objective.scaling={FORK!r} freezes the fractional "
        "encoder's old sub-encoders and projects their outputs; set "
        f"{' and '.join(missing)}")
  return encoder_groups


def scale_group_updates(updates: Any, stage: jax.Array, gamma: jax.Array,
                        model: LatentVariableModel, *,
                        newer_too: bool = False) -> Any:
  """Multiplies the updates of the model's parameter groups < stage (and
  > stage with `newer_too`) by gamma, the others by 1."""
  groups = jnp.arange(model.parameter_groups)
  scaled = (groups != stage) if newer_too else (groups < stage)
  return model.scale_parameter_groups(updates, jnp.where(scaled, gamma, 1.0))


def ungated(num_latents: int) -> LatentGate:
  """Every latent kept, no gradient scaled (arXiv Algorithm 1's forward)."""
  return LatentGate(jnp.ones(num_latents, jnp.float32),
                    jnp.ones(num_latents, jnp.float32))


def check_plain_base(base: str, objective: Objective) -> None:
  """DEFT sets the model's control (its stage gate) and draws uniform
  batches, so it refuses a base that does either itself."""
  own = [capability for capability, present in (
      ("control", objective.control is not None),
      ("batch_sampler", objective.batch_sampler is not None)) if present]
  if own:
    raise ValueError(
        f"config.objective.base={base!r}: DEFT wraps a plain objective, but "
        f"{base!r} has its own {' and '.join(own)} (it steers the model or "
        "draws its data itself, which DEFT's stages do)")


def _staged_hparams(hparams: Mapping[str, jax.Array], stage: jax.Array,
                    staged: str) -> dict[str, jax.Array]:
  return {**hparams, staged: hparams["pressures"][stage]}


def deft_loss(output: VAEOutput, x: jax.Array,
              hparams: Mapping[str, jax.Array], step: jax.Array,
              aux: Any = None, *, base: Objective, staged: str,
              boundaries: tuple[int, ...]
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The base objective with its `staged` pressure set to this stage's."""
  stage = deft_stage(step, boundaries)
  staged_hparams = _staged_hparams(hparams, stage, staged)
  loss, metrics = base.loss(output, x, staged_hparams, step, aux)
  return loss, {**metrics, "stage": stage.astype(jnp.float32),
                "pressure": staged_hparams[staged]}


def _update_aux(aux, output, hparams, step, key, *, base: Objective,
                staged: str, boundaries: tuple[int, ...]):
  stage = deft_stage(step, boundaries)
  return base.aux.update(aux, output, _staged_hparams(hparams, stage, staged),
                         step, key)


@OBJECTIVES.register("deft")
def deft(base: str = DEFAULT_BASE, staged: str = "beta",
         pressures: Iterable = (70.0, 30.0, 12.0, 1.0),
         stage_steps: int | Sequence[int] = 15_000,
         gamma: float | Iterable[float] | None = None,
         base_options: Mapping[str, Any] | None = None,
         scaling: str = "gradient", *, num_latents: int, dataset_size: int,
         encoder_groups: int | None = None, latent_layers: int = 1,
         latent_projection: str = "none",
         factor_names: Sequence[str] = ()) -> Objective:
  """DEFT around the `base` objective (any registered objective with a
  `staged` hyperparameter: 'beta' of beta_vae, 'alpha' of beta_tcvae for
  DEFT(TC)); `base_options`: the base objective's other settings.

  `pressures`: one pressure per stage (G = len), or a grid of such
  sequences; `stage_steps`: steps per stage, or one length per stage (the
  last runs to the end of training); `gamma` in [0, 1]: the old groups'
  gradient factor, one value or a grid (default 0.1; not allowed with
  scaling='fork_frozen_projection', which freezes them); `scaling`: one of
  SCALINGS (module docstring).  The model's num_latents must be a multiple
  of G (with the fork's scaling, G is the encoder's sub-encoder count).
  Defaults: dlib-deft's dSprites launch (70, 30, 12, 1; 15,000 steps per
  stage; gamma 0.1).  The run's context (dataset_size, ...) is passed on
  to the base's builder.
  """
  options = dict(base_options or {})
  if staged in options:
    raise ValueError(
        f"config.objective.base_options sets {staged!r}, the staged pressure; "
        "DEFT sets it per stage from config.objective.pressures")
  takes_staged = staged in OBJECTIVES.allowed_keys(base)
  base_objective = OBJECTIVES.build(
      {"name": base, **options, **({staged: 1.0} if takes_staged else {})},
      where="config.objective.base_options", dataset_size=dataset_size,
      num_latents=num_latents, encoder_groups=encoder_groups,
      latent_layers=latent_layers, factor_names=factor_names)
  check_plain_base(base, base_objective)
  if not takes_staged:
    raise ValueError(
        f"config.objective.staged={staged!r}: objective {base!r} has no such "
        f"hyperparameter; it takes {OBJECTIVES.allowed_keys(base)}")
  if staged not in base_objective.hyperparameters:
    raise ValueError(
        f"config.objective.staged={staged!r}: objective {base!r} has no such "
        f"hyperparameter; it has {sorted(base_objective.hyperparameters)}")
  pressure_grid = sequence_grid("pressures", pressures, positive=True)
  num_stages = len(pressure_grid[0])
  if scaling not in SCALINGS:
    raise ValueError(f"config.objective.scaling={scaling!r}; allowed: "
                     f"{SCALINGS}")
  fork = scaling == FORK
  # The latent groups: one per stage, or the fork's sub-encoders (each of
  # the same number of latents, which the fractional encoder checks).
  num_groups = (check_fork_model(encoder_groups, latent_projection) if fork
                else num_stages)
  if num_latents % num_groups:
    raise ValueError(
        f"{num_groups} stages (config.objective.pressures) do not divide "
        f"config.model.num_latents={num_latents}; DEFT needs G groups of K "
        "latents (num_latents = G * K)")
  if scaling in UPDATE_SCALINGS and encoder_groups != num_groups:
    raise ValueError(
        f"config.objective.scaling={scaling!r} scales the fractional encoder's "
        f"sub-encoders, so it needs config.model.encoder='fractional' with "
        f"num_groups={num_groups} (one per stage); the model has "
        f"{'no groups' if encoder_groups is None else encoder_groups}")
  if (scaling == "gradient" and encoder_groups is not None
      and encoder_groups % num_groups):
    raise ValueError(
        f"the fractional encoder's {encoder_groups} sub-encoders "
        f"(config.model.num_groups) do not split into {num_groups} stages "
        f"(config.objective.pressures): stage g gates latents "
        f"{num_latents // num_groups} g.. of {num_latents}, which would cut "
        f"a sub-encoder; use num_groups = a multiple of {num_groups}")
  hyperparameters = {k: v for k, v in base_objective.hyperparameters.items()
                     if k != staged}
  hyperparameters.update(pressures=pressure_grid)
  if fork:
    if gamma is not None:
      raise ValueError(
          f"config.objective.gamma={gamma!r}: scaling={FORK!r} freezes the "
          "old sub-encoders, so gamma has no role; leave it unset")
  else:
    gammas = hyperparameter_grid("gamma", 0.1 if gamma is None else gamma,
                                 non_negative=True)
    if max(gammas) > 1.0:
      raise ValueError(f"config.objective.gamma={gammas}; must be in [0, 1]")
    hyperparameters.update(gamma=gammas)
  boundaries = stage_boundaries(stage_steps, num_stages)

  def control(hparams, step, key=None):
    del key
    if scaling == "arxiv_algorithm1":
      return ungated(num_latents)
    if fork:
      return fork_gate(deft_stage(step, boundaries), num_latents, num_groups)
    gamma = hparams["gamma"] if scaling == "gradient" else 1.0
    return deft_gate(deft_stage(step, boundaries), gamma, num_latents,
                     num_groups)

  def scale_updates(updates, hparams, step, model):
    stage = deft_stage(step, boundaries)
    if fork:  # old sub-encoders frozen: their updates x 0
      return scale_group_updates(updates, stage, 0.0, model)
    return scale_group_updates(updates, stage, hparams["gamma"], model,
                               newer_too=scaling == "arxiv_algorithm1")

  common = dict(base=base_objective, staged=staged, boundaries=boundaries)
  aux = None
  if base_objective.aux is not None:
    aux = AuxState(init=base_objective.aux.init,
                   update=functools.partial(_update_aux, **common))
  return Objective(
      name="deft" if base == DEFAULT_BASE else f"deft_{base}",
      loss=functools.partial(deft_loss, **common),
      hyperparameters=hyperparameters,
      per_example_mean=base_objective.per_example_mean,
      reconstruction=base_objective.reconstruction,
      aux=aux,
      control=StagedControl(
          for_step=control,
          representations=lambda hparams, step: {"": control(hparams, step)}),
      stage=functools.partial(deft_stage, boundaries=boundaries),
      update_transform=(scale_updates if fork or scaling in UPDATE_SCALINGS
                        else None))
