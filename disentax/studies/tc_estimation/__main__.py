"""DeVAE Table 1 as a program: FactorVAE discriminator TC estimates against
the true TC of correlated Gaussians (the study: disentax/studies/
tc_estimation/__init__.py).

  python -m disentax.studies.tc_estimation [--dims=10,100,1000]
      [--rhos=0.3,0.6,0.9] [--repeats=10] [--steps=2000] [--out=FILE.md]
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

import jax
from absl import app, flags

from disentax import cli
from disentax.studies.tc_estimation import (B1, B2, LEARNING_RATE,
                                            check_study_args,
                                            estimate_tc_grid, format_table,
                                            true_tc)

flags.DEFINE_list("dims", ["10", "100", "1000"],
                  "Dimensions D (even: two halves of D/2).")
flags.DEFINE_list("rhos", ["0.3", "0.6", "0.9"],
                  "Cross-half correlations, 0 < rho < 1.")
flags.DEFINE_integer("repeats", 10, "Independent runs per (D, rho).")
flags.DEFINE_integer("steps", 2000, "Discriminator training steps.")
flags.DEFINE_integer("batch_size", 64, "Training (and evaluation) batch.")
flags.DEFINE_integer("eval_batches", 16,
                     "Fresh batches the final estimate averages over.")
flags.DEFINE_integer("seed", 0, "PRNG seed.")
flags.DEFINE_integer("steps_per_call", 100,
                     "Training steps per call of the compiled program "
                     "(progress and checkpoints in between; same numbers "
                     "for any value).")
flags.DEFINE_string("checkpoint_dir", None,
                    "Save each D's state here after every call and resume "
                    "from it (and skip finished Ds) when rerun.")
flags.DEFINE_string("out", None, "Also write the Markdown table here "
                    "(rewritten after each D).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {list(argv[1:])}")
  f = flags.FLAGS
  try:
    dims, rhos = check_study_args(f.dims, f.rhos, f.repeats, f.steps,
                                  f.batch_size, f.eval_batches)
  except ValueError as error:
    raise cli.UsageError(str(error)) from error
  if f.steps_per_call < 1:
    raise cli.UsageError(f"steps_per_call={f.steps_per_call}: must be an "
                         "int >= 1")
  if f.checkpoint_dir:
    os.makedirs(f.checkpoint_dir, exist_ok=True)
  print(f"FactorVAE discriminator TC estimate vs true TC: {f.repeats} "
        f"repeats x {f.steps} steps, batch {f.batch_size}, Adam lr "
        f"{LEARNING_RATE:g} b1 {B1:g} b2 {B2:g}, {f.eval_batches} eval "
        f"batches; jax {jax.__version__} on {jax.devices()[0].device_kind}",
        file=sys.stderr)
  results = {}
  key = jax.random.PRNGKey(f.seed)
  start_all = time.perf_counter()
  for dim in dims:
    start = time.perf_counter()
    print(f"D={dim}: {len(rhos)} rhos x {f.repeats} repeats ...",
          file=sys.stderr, flush=True)

    def progress(done, dim=dim, start=start):
      print(f"D={dim}: step {done}/{f.steps}  "
            f"[{time.perf_counter() - start:.0f} s]", file=sys.stderr,
            flush=True)

    checkpoint = (os.path.join(f.checkpoint_dir, f"tc_estimation_D{dim}.npz")
                  if f.checkpoint_dir else None)
    estimates = estimate_tc_grid(jax.random.fold_in(key, dim), dim, rhos,
                                 f.repeats, f.steps, f.batch_size,
                                 f.eval_batches,
                                 steps_per_call=f.steps_per_call,
                                 checkpoint_path=checkpoint,
                                 progress=progress)
    results[dim] = dict(zip(rhos, estimates))
    means = ", ".join(f"rho {r:g}: {e.mean():.2f} (true {true_tc(dim, r):.2f})"
                      for r, e in zip(rhos, estimates))
    print(f"D={dim}: {means}  [{time.perf_counter() - start:.0f} s]",
          file=sys.stderr, flush=True)
    if f.out:  # the rows so far, so a long study killed midway keeps them
      with open(f.out, "w") as out:
        out.write(format_table(results))
  print(format_table(results), end="")
  print(f"total {time.perf_counter() - start_all:.0f} s", file=sys.stderr)
  if f.out:
    print(f"wrote {f.out}", file=sys.stderr)


if __name__ == "__main__":
  cli.run(main)
