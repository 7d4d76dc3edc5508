"""Pictures of the datasets: a grid of uniformly sampled observations each.

  python -m disentax.pictures --out=DIR [--datasets=all|a,b] [--num=16]
      [--image_size=64] [--seed=0]

writes DIR/<dataset>.png for every registered dataset (or those named) and
prints each path (`disentax.reporting.pictures.write_pictures`).  A dataset
that does not build from its defaults (it needs a file) is skipped with a
one-line note; the exit status is 1 when one named in --datasets was.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app, flags

from disentax import cli
from disentax.reporting import pictures

_OUT = flags.DEFINE_string("out", None, "output directory")
_DATASETS = flags.DEFINE_string(
    "datasets", "all", "'all' (every dataset buildable without files) or "
    "comma-separated registered names")
_NUM = flags.DEFINE_integer("num", 16, "observations per picture")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 64, "for datasets whose builder takes image_size")
_SEED = flags.DEFINE_integer("seed", 0, "random seed of the samples")


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _NUM.value < 1:
    raise cli.UsageError(f"--num must be >= 1, got {_NUM.value}")
  explicit = _DATASETS.value != "all"
  names = ([n.strip() for n in _DATASETS.value.split(",") if n.strip()]
           if explicit else None)
  paths, skipped = pictures.write_pictures(
      _OUT.value, names, num=_NUM.value, image_size=_IMAGE_SIZE.value,
      seed=_SEED.value, note=lambda line: print(line, file=sys.stderr))
  for path in paths:
    print(path)
  return 1 if explicit and skipped else 0


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  cli.run(main)
