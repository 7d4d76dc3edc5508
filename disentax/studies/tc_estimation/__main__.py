"""DeVAE Table 1 as a program: FactorVAE discriminator TC estimates against
the true TC of correlated Gaussians (the study: disentax/studies/
tc_estimation/__init__.py).

  python -m disentax.studies.tc_estimation [--dims=10,100,1000]
      [--rhos=0.3,0.6,0.9] [--repeats=10] [--steps=2000] [--out=FILE.md]
      [--setting=devae_code|dlib_google] [--batch_size=N]
      [--learning_rate=X] [--b1=X] [--b2=X] [--leaky_slope=X]
      [--initializer=torch|glorot] [--permuted=same_batch|second_batch]
      [--probability_clip=X] [--width=N] [--depth=N]

--setting picks every training choice at once; each flag below it replaces
one of them.  With --checkpoint_dir, SIGTERM (a time limit: `timeout 600
python -m ...`) saves the state after the current call of --steps_per_call
steps and exits 143; rerunning the same command resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Sequence

import jax
from absl import app, flags

from disentax import cli, preemption
from disentax.objectives.factor_vae import DISCRIMINATOR_INITIALIZERS
from disentax.studies.tc_estimation import (PERMUTED_FROM, SETTINGS,
                                            check_setting, check_study_args,
                                            estimate_tc_grid, format_table,
                                            true_tc)

flags.DEFINE_list("dims", ["10", "100", "1000"],
                  "Dimensions D (even: two halves of D/2).")
flags.DEFINE_list("rhos", ["0.3", "0.6", "0.9"],
                  "Cross-half correlations, 0 < rho < 1.")
flags.DEFINE_integer("repeats", 10, "Independent runs per (D, rho) (the "
                     "paper: 10).")
flags.DEFINE_integer("steps", 2000, "Discriminator training steps (the "
                     "paper: 2000 iterations).")
flags.DEFINE_enum("setting", "devae_code", list(SETTINGS),
                  "devae_code: the DeVAE authors' code (their "
                  "disentanglement_lib fork: PyTorch Adam defaults lr 1e-3, "
                  "b1 0.9, b2 0.999; nn.Linear init; LeakyReLU 0.01; "
                  "probabilities clamped at 1e-6) at the DeVAE paper's "
                  "batch 256.  dlib_google: this repo's FactorVAE "
                  "discriminator (Adam lr 1e-4, b1 0.5, b2 0.9; Glorot "
                  "init; leaky ReLU 0.2; exact log-softmax) at batch 64.")
flags.DEFINE_integer("batch_size", None, "Training (and evaluation) batch; "
                     "default: the setting's.")
flags.DEFINE_float("learning_rate", None, "Discriminator Adam learning "
                   "rate; default: the setting's.")
flags.DEFINE_float("b1", None, "Adam b1; default: the setting's.")
flags.DEFINE_float("b2", None, "Adam b2; default: the setting's.")
flags.DEFINE_float("leaky_slope", None, "Leaky-ReLU negative slope; "
                   "default: the setting's.")
flags.DEFINE_enum("initializer", None, list(DISCRIMINATOR_INITIALIZERS),
                  "Dense-layer init (torch: nn.Linear's; glorot: TF's); "
                  "default: the setting's.")
flags.DEFINE_enum("permuted", None, list(PERMUTED_FROM),
                  "What the permuted class shuffles: the training batch "
                  "itself or a second fresh batch; default: the setting's.")
flags.DEFINE_float("probability_clip", None, "Clip the discriminator's "
                   "probabilities to [c, 1 - c] in its loss (0: exact "
                   "log-softmax); default: the setting's.")
flags.DEFINE_integer("width", None, "Discriminator width; default 1000.")
flags.DEFINE_integer("depth", None, "Discriminator hidden layers; "
                     "default 6.")
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

_SETTING_FLAGS = ("batch_size", "learning_rate", "b1", "b2", "leaky_slope",
                  "initializer", "permuted", "probability_clip", "width",
                  "depth")


def main(argv: Sequence[str]) -> int | None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {list(argv[1:])}")
  f = flags.FLAGS
  overrides = {name: f[name].value for name in _SETTING_FLAGS
               if f[name].value is not None}
  setting = dataclasses.replace(SETTINGS[f.setting], **overrides)
  errors = []  # every bad value at once, before anything compiles
  try:
    dims, rhos = check_study_args(f.dims, f.rhos, f.repeats, f.steps,
                                  f.eval_batches)
  except ValueError as error:
    errors.append(str(error))
  try:
    check_setting(setting)
  except ValueError as error:
    errors.append(str(error))
  if f.steps_per_call < 1:
    errors.append(f"steps_per_call={f.steps_per_call}: must be an int >= 1")
  if errors:
    raise cli.UsageError("; ".join(errors))
  if f.checkpoint_dir:
    os.makedirs(f.checkpoint_dir, exist_ok=True)
  print(f"FactorVAE discriminator TC estimate vs true TC: {f.repeats} "
        f"repeats x {f.steps} steps, {f.setting} {setting}, "
        f"{f.eval_batches} eval batches; jax {jax.__version__} on "
        f"{jax.devices()[0].device_kind}", file=sys.stderr)
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
    # SIGTERM stops at a checkpoint; without one it ends the process.
    try:
      with (preemption.SigtermFlag() if checkpoint
            else contextlib.nullcontext()) as sigterm:
        estimates = estimate_tc_grid(
            jax.random.fold_in(key, dim), dim, rhos, f.repeats, f.steps,
            setting, f.eval_batches, steps_per_call=f.steps_per_call,
            checkpoint_path=checkpoint, progress=progress,
            stop=sigterm and (lambda sigterm=sigterm: sigterm.received))
    except preemption.Preempted as stopped:
      print(stopped, file=sys.stderr, flush=True)
      return preemption.PREEMPTED_EXIT
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
