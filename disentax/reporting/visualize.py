"""Pictures of trained members (`python -m disentax.visualize`): what a
failure-rate table does not show of the models a researcher cares about.

For each chosen member (`choose_members`: the best, median or worst by the
run's primary metric, every member, or member ids), into
OUT/member<m>_seed<s>/ (names in `disentax.workdir`):

  reconstructions.png  `num` observations, each above its reconstruction
                       (the decoder's mean at the posterior mean)
  samples.png          the decoder's means at `num` draws from the prior
                       N(0, I), the same draws for every member
  traversals.png       every latent swept over TRAVERSAL_STEPS values from
                       -TRAVERSAL_RANGE to TRAVERSAL_RANGE around the
                       posterior mean of one observation, the others held;
                       rows sorted by the latent's mean KL(q(z_j|x) ||
                       N(0, 1)) over the points, each labelled with it
                       (DEFT Fig. 10)
  traversals.gif       the same animated: frame s shows every latent (in
                       KL order) at step s
  responses.png        each latent's mean code over each factor's values
                       (`factor_responses`; labelled datasets only)

and OUT/metric_correlations.png: how the run's metrics rank its members
alike (Spearman, `tables.metric_correlations`; needs results).

Every member is drawn from the same uniform draw of `num_points`
observations (`member_views`, seeded): its KLs, codes and the traversal's
observation (the draw's first).  The evaluation job draws its
best/median/worst traversal PNGs with the same `ranked_members`,
`member_views` and `write_traversal_png`, so both show the same picture of
a member.  The checkpoint is restored as the job restores it
(`evaluation.members.open_checkpoint`), and only the chosen members are
encoded and decoded (`MemberFunctions.at(..., ids=)`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from disentax import results
from disentax.cli import UsageError
from disentax.evaluation.members import (MemberFunctions, finite_members,
                                         open_checkpoint)
from disentax.experiment import Experiment
from disentax.metrics.base import TrainedMembers
from disentax.metrics.sampling import (jitted_dataset, map_in_batches,
                                       sample_factors)
from disentax.objectives.base import gaussian_kl
from disentax.reporting import figures, pictures
from disentax.reporting.tables import finite_value, select_rows
from disentax.results import Row
from disentax.workdir import (METRIC_CORRELATIONS_NAME, RECONSTRUCTIONS_NAME,
                              RESPONSES_NAME, SAMPLES_NAME,
                              TRAVERSALS_GIF_NAME, TRAVERSALS_NAME,
                              member_pictures_dir, pictures_dir,
                              results_json_path)

TRAVERSAL_STEPS = 10
TRAVERSAL_RANGE = 2.0  # latent values from -2 to 2 prior standard deviations
NUM_POINTS = 1000      # observations the KLs and responses are measured on
ENCODE_BATCH = 250     # observations per encoder call
RANKS = ("best", "median", "worst")
SELECTIONS = (*RANKS, "all")
Note = Callable[[str], None]


# --------------------------------------------------------------------------
# Which members.


def parse_members(spec: str) -> str | list[int]:
  """`spec` as one of SELECTIONS or a list of distinct member ids (from
  comma-separated integers >= 0, first occurrence kept).

  Raises:
    ValueError: naming `spec` and what is allowed.
  """
  spec = spec.strip()
  if spec in SELECTIONS:
    return spec
  parts = [part.strip() for part in spec.split(",")]
  if not all(part.isdigit() for part in parts):
    raise UsageError(f"--members={spec!r}; allowed: {', '.join(SELECTIONS)} "
                     "or comma-separated member ids (integers >= 0, e.g. "
                     "0,3)")
  return list(dict.fromkeys(int(part) for part in parts))


def ranked_members(rows: Sequence[Row], metric: str
                   ) -> dict[str, tuple[float, int]]:
  """{"best", "median", "worst": (value, member)} of the members whose
  `metric` is finite in `rows` (one row per seed, `select_rows`; 'ok' rows
  only), ordered by (value, member); the median is the upper one of an
  even count.  Empty when no member has a finite value."""
  scored = sorted((value, int(row["member"])) for row in select_rows(rows)
                  if (value := finite_value(row, metric)) is not None)
  if not scored:
    return {}
  return {"best": scored[-1], "median": scored[len(scored) // 2],
          "worst": scored[0]}


def choose_members(spec: str | list[int], rows: Sequence[Row] | None,
                   metric: str, num_members: int
                   ) -> list[tuple[int, str | None]]:
  """(member, rank or None) of `spec` (`parse_members`) in a run of
  `num_members` members: the member of a rank by `metric` in `rows`,
  every member, or the ids given.

  Raises:
    ValueError: a rank without `rows` (the run is not evaluated) or without
      a member scored; an id out of range.
  """
  if spec in RANKS:
    if rows is None:
      raise UsageError(f"--members={spec} ranks members by {metric}, which "
                       "needs the run's results: run `python -m "
                       "disentax.evaluate` first")
    ranked = ranked_members(rows, metric)
    if not ranked:
      raise UsageError(f"--members={spec}: no member has a finite {metric} "
                       "in the results; choose members by id or 'all'")
    return [(ranked[spec][1], spec)]
  ids = list(range(num_members)) if spec == "all" else list(spec)
  outside = [m for m in ids if not 0 <= m < num_members]
  if outside:
    raise UsageError(f"--members: member id(s) {outside} out of range; the "
                     f"run has {num_members} members, 0..{num_members - 1}")
  return [(m, None) for m in ids]


def member_title(exp: Experiment, member: int, seed: int,
                 rank: str | None = None, metric: str | None = None,
                 value: float | None = None) -> str:
  """"<method> on <dataset>: [<rank> ][<metric> <value> ](member m, seed
  s)", the heading of a member's pictures."""
  score = "" if value is None else f"{metric} {value:.3f} "
  return (f"{exp.method} on {exp.dataset.name}: {rank + ' ' if rank else ''}"
          f"{score}(member {member}, seed {seed})")


# --------------------------------------------------------------------------
# What the pictures are drawn from.


def traversal_codes(code: np.ndarray, steps: int = TRAVERSAL_STEPS,
                    span: float = TRAVERSAL_RANGE) -> np.ndarray:
  """[d * steps, d] codes: for each latent j (rows j*steps..), `code` with
  latent j swept over `steps` values from -span to span."""
  d = code.shape[-1]
  grid = np.repeat(code[None, :], d * steps, axis=0)
  values = np.linspace(-span, span, steps)
  for j in range(d):
    grid[j * steps:(j + 1) * steps, j] = values
  return grid


def traversal_images(decode_fn: Callable[[jax.Array], jax.Array],
                     codes: np.ndarray, steps: int = TRAVERSAL_STEPS
                     ) -> np.ndarray:
  """Every member's latent traversal around its own code: `codes` [M, d]
  -> images [M, d, steps, H, W, C] decoded by `decode_fn` (codes [M, b, d]
  -> observations [M, b, H, W, C]), `traversal_codes` of each member's
  code."""
  num_members, d = np.shape(codes)
  grids = np.stack([traversal_codes(code, steps) for code in codes])
  images = np.asarray(decode_fn(jnp.asarray(grids, jnp.float32)))
  return images.reshape(num_members, d, steps, *images.shape[2:])


def factor_responses(factors: np.ndarray, codes: np.ndarray,
                     factor_sizes: Sequence[int]) -> list[np.ndarray]:
  """Per factor k, float [factor_sizes[k], d]: row v the mean of codes
  [n, d] over the points whose factor k (factors int [n, F]) has value
  index v; NaN where no point has it."""
  factors, codes = np.asarray(factors), np.asarray(codes, float)
  if factors.ndim != 2 or codes.ndim != 2 or len(factors) != len(codes) \
      or factors.shape[1] != len(factor_sizes):
    raise ValueError(f"factors [n, {len(factor_sizes)}] and codes [n, d] "
                     f"expected, got {factors.shape} and {codes.shape}")
  responses = []
  for k, size in enumerate(factor_sizes):
    values = factors[:, k].astype(int)
    sums = np.zeros((size, codes.shape[1]))
    np.add.at(sums, values, codes)
    counts = np.bincount(values, minlength=size)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
      responses.append(np.where(counts > 0, sums / counts, np.nan))
  return responses


@dataclasses.dataclass(frozen=True)
class MemberViews:
  """What the pictures of some members are drawn from, member axis first
  (in the order of the `TrainedMembers` they came from).

  Attributes:
    factors: int [n, F], the uniform draw of observations.
    codes: [M, n, d], the representation the metrics score.
    means: [M, n, d], the posterior means.
    kl: [M, d], each latent's mean KL(q(z_j|x) || N(0, 1)) over the draw.
    traversals: [M, d, steps, H, W, C], `traversal_codes` around the
      posterior mean of the draw's first observation, decoded.
  """
  factors: np.ndarray
  codes: np.ndarray
  means: np.ndarray
  kl: np.ndarray
  traversals: np.ndarray


def member_views(members: TrainedMembers, rng: jax.Array,
                 num_points: int = NUM_POINTS) -> MemberViews:
  """The `MemberViews` of every member of `members` on `num_points`
  observations drawn uniformly with `rng`."""
  members.require("pictures", "dataset", "representation_fn",
                  "posterior_fn", "decode_fn")
  factors = sample_factors(members.dataset, rng, num_points)
  codes, means, logvars = map_in_batches(
      lambda x: (members.representation_fn(x), *members.posterior_fn(x)),
      jitted_dataset(members.dataset)[1], factors,
      min(ENCODE_BATCH, num_points), where="pictures")
  kl = np.asarray(gaussian_kl(jnp.asarray(means), jnp.asarray(logvars))
                  ).mean(axis=1)
  return MemberViews(
      factors=factors, codes=codes, means=means, kl=kl,
      traversals=traversal_images(members.decode_fn, means[:, 0]))


def reconstructions(members: TrainedMembers, views: MemberViews,
                    num: int) -> tuple[np.ndarray, np.ndarray]:
  """(the draw's first `num` observations [num, H, W, C], every member's
  decoder means at their posterior means [M, num, H, W, C])."""
  observations = np.asarray(jitted_dataset(members.dataset)[1](
      views.factors[:num]))
  return observations, np.asarray(members.decode_fn(
      jnp.asarray(views.means[:, :num], jnp.float32)))


def prior_samples(members: TrainedMembers, rng: jax.Array, num: int,
                  num_latents: int, num_members: int) -> np.ndarray:
  """[M, num, H, W, C]: every member's decoder means at the same `num`
  draws from N(0, I) (drawn with `rng`)."""
  z = jax.random.normal(rng, (num, num_latents))
  return np.asarray(members.decode_fn(
      jnp.broadcast_to(z, (num_members, num, num_latents))))


def latent_order(kl: np.ndarray) -> tuple[np.ndarray, list[str]]:
  """(the latents by decreasing KL [d], labelled "z<j> KL <kl>" in that
  order); ties keep the latent order."""
  order = np.argsort(-np.asarray(kl), kind="stable")
  return order, [f"z{j} KL {kl[j]:.2f}" for j in order]


# --------------------------------------------------------------------------
# The pictures.


def write_traversal_png(images: np.ndarray, kl: np.ndarray, path: str,
                        title: str) -> str:
  """`pictures.traversal_figure` of one member's traversals [d, steps, H,
  W, C], rows sorted by `kl` [d] (`latent_order`); returns `path`."""
  order, labels = latent_order(kl)
  return pictures.traversal_figure(
      images[order], path, f"{title}\nlatents by mean KL to the prior, "
      f"values {-TRAVERSAL_RANGE:g}..{TRAVERSAL_RANGE:g}", labels)


def write_traversal_gif(images: np.ndarray, kl: np.ndarray,
                        path: str) -> str:
  """The animated traversal of one member (`pictures.traversal_frames`,
  latents in `latent_order`, enlarged by `pictures.gif_scale`); returns
  `path`."""
  order, _ = latent_order(kl)
  frames = pictures.traversal_frames(images[order],
                                     pictures.gif_scale(images.shape[2]))
  return pictures.write_gif(frames, path)


def _write_member(exp: Experiment, views: MemberViews, i: int,
                  observations: np.ndarray, outputs: np.ndarray,
                  samples: np.ndarray, directory: str, title: str,
                  note: Note) -> list[str]:
  """Every picture of member position `i` into `directory`."""
  num = len(observations)
  rows, cols = pictures.grid_shape(num)
  paths = [
      pictures.grid_figure(
          pictures.pair_grid(observations, outputs[i]),
          os.path.join(directory, RECONSTRUCTIONS_NAME),
          f"{title}\neach observation above its reconstruction",
          pictures.figure_inches(2 * rows, cols)),
      pictures.grid_figure(
          pictures.image_grid(samples[i]),
          os.path.join(directory, SAMPLES_NAME),
          f"{title}\n{num} samples: decoded draws from N(0, I)",
          pictures.figure_inches(rows, cols)),
      write_traversal_png(views.traversals[i], views.kl[i],
                          os.path.join(directory, TRAVERSALS_NAME), title),
      write_traversal_gif(views.traversals[i], views.kl[i],
                          os.path.join(directory, TRAVERSALS_GIF_NAME))]
  if exp.dataset.labelled:
    order, labels = latent_order(views.kl[i])
    responses = factor_responses(views.factors, views.codes[i][:, order],
                                 exp.dataset.factor_sizes)
    paths.append(figures.response_figure(
        responses, exp.dataset.factor_names, labels,
        os.path.join(directory, RESPONSES_NAME),
        f"{title}: mean code over each factor's values "
        f"({len(views.factors)} points)"))
  else:
    note(f"{exp.dataset.name} has no ground-truth factors: no "
         f"{RESPONSES_NAME}")
  return paths


def _results_rows(workdir: str, spec: str | list[int]) -> list[Row] | None:
  """The run's results rows; None when it is not evaluated and `spec` does
  not rank members (else a ValueError saying to evaluate it)."""
  path = results_json_path(workdir)
  if os.path.isfile(path):
    return results.load_run(workdir).rows
  if spec in RANKS:
    raise UsageError(
        f"--members={spec} ranks the members by the run's primary metric, "
        f"and {path} does not exist: run `python -m disentax.evaluate "
        f"--workdir={workdir}` first (--members=all or member ids need only "
        "the checkpoint)")
  return None


def visualize(workdir: str, members: str = "best", out: str | None = None,
              *, num: int = 16, seed: int = 0, step: int | None = None,
              num_points: int = NUM_POINTS, note: Note = print
              ) -> list[str]:
  """Draws the pictures of the chosen `members` (`parse_members`) of
  `workdir`'s checkpoint of `step` (default the latest) into `out`
  (default WORKDIR/pictures/), and the run's metric correlations; returns
  the paths written.  `num` images per grid; `num_points` observations
  (drawn with `seed`) measure the KLs and responses.  `note` gets a line
  per picture left out and why.  Every argument is checked before the
  checkpoint's state is read.

  Raises:
    ValueError: a bad argument (naming it and what is allowed), a rank
      asked of a run without results, a member id out of range, a step
      without a checkpoint.
    FileNotFoundError: no checkpoint.
  """
  spec = parse_members(members)
  pictures.grid_shape(num)  # num >= 1
  if num_points < num:
    raise UsageError(f"num_points must be >= num ({num}), got {num_points}")
  rows = _results_rows(workdir, spec)
  run = open_checkpoint(workdir, step)
  exp = run.exp
  metric = exp.config.eval.metric.name
  try:
    chosen = choose_members(spec, rows, metric, len(run.meta["members"]))
  except ValueError:
    run.manager.close()
    raise
  state = run.restore()
  out = pictures_dir(workdir) if out is None else out
  if rows is not None and {int(r["step"]) for r in rows} != {run.step}:
    note(f"the results are of step(s) {sorted({int(r['step']) for r in rows})}"
         f"; the pictures show step {run.step}")
  seeds = {int(m["member"]): int(m["seed"]) for m in run.meta["members"]}
  values = {int(r["member"]): finite_value(r, metric)
            for r in select_rows(rows or [])}
  ids = [m for m, _ in chosen]
  finite = finite_members(jax.tree.map(lambda leaf: leaf[np.asarray(ids)],
                                       state.params), len(ids))
  for m in np.asarray(ids)[~finite]:
    note(f"member {m}: parameters not finite; no pictures")
  chosen = [c for c, ok in zip(chosen, finite) if ok]
  paths = []
  if chosen:
    ids = [m for m, _ in chosen]
    trained, _ = MemberFunctions(exp).at(state, run.step, ids=ids)
    rng = jax.random.key(seed)
    views = member_views(trained, rng, num_points)
    observations, outputs = reconstructions(trained, views, num)
    samples = prior_samples(trained, jax.random.fold_in(rng, 1), num,
                            views.kl.shape[1], len(ids))
    for i, (member, rank) in enumerate(chosen):
      title = member_title(exp, member, seeds[member], rank, metric,
                           values.get(member))
      paths += _write_member(
          exp, views, i, observations, outputs, samples,
          member_pictures_dir(out, member, seeds[member]), title, note)
  if rows is None:
    note(f"no results: no {METRIC_CORRELATIONS_NAME} (run `python -m "
         f"disentax.evaluate --workdir={workdir}` first)")
  else:
    try:
      paths.append(figures.metric_correlation_figure(
          rows, os.path.join(out, METRIC_CORRELATIONS_NAME),
          f"{exp.method} on {exp.dataset.name}: metrics' Spearman "
          "correlations"))
    except ValueError as e:
      note(f"no {METRIC_CORRELATIONS_NAME}: {e}")
  return paths

