"""Hand-made results files for the report, results and figure tests.

`make_row` builds one results row; `write_workdir` writes a workdir holding
results/results.json (+ arrays.npz, trace.npz, metrics.jsonl); `make_sweep`
writes two tiny synthetic workdirs -- results.json with factor_names,
arrays.npz, trace.npz and metrics.jsonl -- whose numbers the tests check the
tables against, and `EXPECTED_FIGURES` is what the report draws of them.
"""

import json
import os
import struct

import numpy as np


def make_row(seed, value, beta=4.0, status="ok", step=1000,
             method="beta_vae", dataset="dsprites", member=None):
  """One results row of seed `seed` with MIG `value`."""
  return {
      "schema_version": 1, "method": method, "dataset": dataset,
      "config_hash": "abc123", "step": step,
      "member": seed if member is None else member, "seed": seed,
      "hparams": {"beta": beta}, "status": status,
      "metrics": {"mig": value},
  }


# 4 seeds: one failure, two successes, one non-finite.
ROWS = [make_row(0, 0.05), make_row(1, 0.2), make_row(2, 0.3),
        make_row(3, None, status="non_finite")]


def write_workdir(root, rows, name="run", factor_names=None, arrays=None,
                  trace=None, log_lines=None):
  """A workdir holding results/results.json (+ arrays.npz, trace.npz, and
  metrics.jsonl of `log_lines`)."""
  workdir = os.path.join(root, name)
  os.makedirs(os.path.join(workdir, "results"))
  data = {"schema_version": 1, "rows": rows}
  if factor_names is not None:
    data["factor_names"] = list(factor_names)
  with open(os.path.join(workdir, "results", "results.json"), "w") as f:
    json.dump(data, f)
  if arrays is not None:
    np.savez(os.path.join(workdir, "results", "arrays.npz"), **arrays)
  if trace is not None:
    np.savez(os.path.join(workdir, "trace.npz"), **trace)
  if log_lines is not None:
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(line) + "\n" for line in log_lines)
  return workdir


# --- The synthetic sweep: beta_vae (4 seeds) and deft (3 seeds) on dsprites.

FACTORS = ("shape", "scale", "orientation", "posX", "posY")
NUM_LATENTS, TRACE_STEPS = 4, (0, 250, 500, 750, 1000)
BVAE_MIG = {0: 0.05, 1: 0.25, 2: 0.30, 3: None}     # seed 3 non-finite
DEFT_MIG = {10: 0.35, 11: 0.08, 12: None}           # seed 12 non-finite
DEFT_HPARAMS = {"pressures": [70.0, 30.0, 12.0, 4.0], "gamma": 0.1}
DEFT_STAGES = (0, 1, 2, 3, 3)  # per trace step
METRICS = ("mig", "nmi1", "nmi2", "factor_vae_score", "dci_disentanglement",
           "reconstruction_error", "kl")


def _metrics(seed, mig):
  """Every metric of a seed, derived from its MIG (None: all null)."""
  if mig is None:
    return {name: None for name in METRICS}
  return {"mig": mig, "nmi1": 0.5 + mig, "nmi2": 0.2,
          "factor_vae_score": 0.6 + mig, "dci_disentanglement": 1.5 * mig,
          "reconstruction_error": 30.0 - 10.0 * mig, "kl": 20.0 + seed}


def _sweep_rows(method, hparams, migs, step=1000, config_hash="cafe00"):
  return [{"schema_version": 1, "method": method, "dataset": "dsprites",
           "config_hash": config_hash, "step": step, "member": member,
           "seed": seed, "hparams": dict(hparams),
           "status": "ok" if mig is not None else "non_finite",
           "metrics": _metrics(seed, mig)}
          for member, (seed, mig) in enumerate(migs.items())]


def _sweep_arrays_and_trace(migs, stages, rng):
  """arrays.npz and trace.npz contents for the members of `migs`; the
  non-finite member's arrays are NaN (its trace from step 750 on)."""
  members = len(migs)
  bad = [m for m, v in enumerate(migs.values()) if v is None]
  nmi = rng.uniform(0, 1, (members, NUM_LATENTS, len(FACTORS)))
  nmi[bad] = np.nan
  steps = len(TRACE_STEPS)
  trace_nmi = rng.uniform(0, 1, (steps, members, NUM_LATENTS, len(FACTORS)))
  trace_mig = rng.uniform(0, 0.5, (steps, members))
  for m in bad:
    trace_nmi[3:, m] = np.nan
    trace_mig[3:, m] = np.nan
  arrays = {"nmi_matrix": nmi, "mig_per_factor": nmi.max(axis=1)}
  trace = {"step": np.asarray(TRACE_STEPS), "mig": trace_mig,
           "nmi_matrix": trace_nmi,
           "stage": np.repeat(np.asarray(stages)[:, None], members, axis=1),
           "factor_names": np.asarray(FACTORS)}
  return arrays, trace


LOG_STEPS = (500, 1000)


def _log_lines(migs, staged):
  """metrics.jsonl of the members of `migs`: loss = 100 - step / 10 +
  member, recon = loss - kl, kl = 10 + member (null for the non-finite
  member at step 1000), and DEFT's stage (0, then 3) when `staged`."""
  lines = []
  for t, step in enumerate(LOG_STEPS):
    members = range(len(migs))
    loss = [100.0 - step / 10 + m for m in members]
    kl = [None if t and mig is None else 10.0 + m
          for m, mig in enumerate(migs.values())]
    line = {"step": step, "loss": loss, "kl": kl,
            "recon": [l - k if k is not None else None
                      for l, k in zip(loss, kl)]}
    if staged:
      line["stage"] = [float(3 * t)] * len(migs)
    lines.append(line)
  return lines


def make_sweep(root):
  """Two workdirs under `root` ("bvae", "deft"); returns their paths.

  bvae: beta_vae beta=4, seeds 0-3 at step 1000 with MIG 0.05 (fails at
  0.1), 0.25, 0.30, non-finite; plus seed 0 at step 500 with MIG 0.5.  No
  DEFT stages in its trace (stage -1).  deft: pressures 70/30/12/4,
  gamma 0.1, seeds 10-12 with MIG 0.35, 0.08 (fails), non-finite; stages
  0,1,2,3,3 over the 5 trace steps.  Both have metrics.jsonl (`_log_lines`).
  """
  rng = np.random.default_rng(0)
  workdirs = []
  for name, method, hparams, migs, stages in (
      ("bvae", "beta_vae", {"beta": 4.0}, BVAE_MIG, (-1,) * 5),
      ("deft", "deft", DEFT_HPARAMS, DEFT_MIG, DEFT_STAGES)):
    rows = _sweep_rows(method, hparams, migs)
    if name == "bvae":
      rows.insert(0, _sweep_rows(method, hparams, {0: 0.5}, step=500)[0])
    arrays, trace = _sweep_arrays_and_trace(migs, stages, rng)
    workdirs.append(write_workdir(root, rows, name, factor_names=FACTORS,
                                   arrays=arrays, trace=trace,
                                   log_lines=_log_lines(migs,
                                                        method == "deft")))
  return workdirs


def png_size(path):
  """(width, height) of a PNG file, checking its signature and IHDR chunk."""
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  assert head[12:16] == b"IHDR", f"{path} has no IHDR first"
  return struct.unpack(">II", head[16:24])


EXPECTED_FIGURES = {
    **{f"{m}_distribution.png": (600, 350) for m in METRICS},
    "mig_failure_rate.png": (600, 350),
    "bvae_training_curves.png": (1300, 400),   # 3 panels on 1 line
    "deft_training_curves.png": (1300, 700),   # 4 panels on 2 lines
    "bvae_nmi_over_training.png": (1600, 600),
    "bvae_nmi_matrix.png": (625, 400),
    "deft_nmi_over_training.png": (1600, 600),
    "deft_mig_per_stage.png": (800, 450),
    "deft_nmi_matrix.png": (625, 400),
}
