#!/usr/bin/env bash
# Train then evaluate one config on this machine, resuming if DIR has a
# checkpoint, and print its failure-rate table.
#   launch/local.sh experiments/beta_vae.py:cpu runs/bvae [--config.x=y ...]
# Sweeps: launch/sweep_local.sh (here), `python -m disentax.sweep slurm`
# (a SLURM job array).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG[:PRESET] WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
config=$1; workdir=$2; shift 2
python -m disentax.main --config="$config" --workdir="$workdir" "$@"
python -m disentax.evaluate --workdir="$workdir"
