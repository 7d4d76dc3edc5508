"""Pictures of trained members: reconstructions, prior samples, latent
traversals (PNG and GIF), factor responses, and the run's metric
correlations.

  python -m disentax.visualize --workdir=DIR
      [--members=best|median|worst|all|IDS] [--out=DIR/pictures] [--num=16]
      [--seed=0] [--step=latest] [--points=1000]

writes OUT/member<m>_seed<s>/{reconstructions,samples,traversals,
responses}.png and traversals.gif for each chosen member, and
OUT/metric_correlations.png, and prints each path
(`disentax.reporting.visualize.visualize`).  best, median and worst rank
the members by the run's primary metric and need its results (`python -m
disentax.evaluate` first); `all` and member ids (e.g. 0,3) need only the
checkpoint.  Bad flags exit with an error before anything is restored.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app, flags, logging

from disentax import cli
from disentax.reporting import visualize

_WORKDIR = flags.DEFINE_string("workdir", None, "trained (evaluated) workdir")
_MEMBERS = flags.DEFINE_string(
    "members", "best", "best, median or worst by the primary metric (needs "
    "results), all, or comma-separated member ids")
_OUT = flags.DEFINE_string("out", None,
                           "output directory (default WORKDIR/pictures)")
_NUM = flags.DEFINE_integer("num", 16,
                            "images in the reconstruction and sample grids")
_SEED = flags.DEFINE_integer("seed", 0, "random seed of the observations "
                             "and prior samples")
_STEP = flags.DEFINE_integer("step", None,
                             "checkpoint step (default the latest)")
_POINTS = flags.DEFINE_integer(
    "points", visualize.NUM_POINTS,
    "observations the KLs and factor responses are measured on")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  paths = visualize.visualize(
      _WORKDIR.value, _MEMBERS.value, _OUT.value, num=_NUM.value,
      seed=_SEED.value, step=_STEP.value, num_points=_POINTS.value,
      note=lambda line: print(line, file=sys.stderr))
  for path in paths:
    print(path)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  cli.run(main)
