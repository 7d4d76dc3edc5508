#!/usr/bin/env bash
# Runs every job of a sweep plan that is not done, one after another, on this
# machine: the same jobs, workdirs and job.json records as the SLURM array
# (`python -m disentax.sweep slurm`), each resuming from its checkpoint.
#   launch/sweep_local.sh ROOT [SWEEP[:ARG]]
# With SWEEP, plans it into ROOT first (a no-op when ROOT holds the same plan,
# refused when it holds another).  Ends with the status; exits 1 if a job
# failed, 130/143 (and stops) when a job is interrupted or preempted.
set -uo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 ROOT [SWEEP[:ARG]]" >&2
  exit 2
fi
root=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
sweep() { python -m disentax.sweep "$@"; }

if [ $# -eq 2 ]; then
  sweep plan --sweep="$2" --root="$root" || exit $?
fi
todo=$(sweep status --root="$root" --todo) || exit $?
failed=()
for job in $todo; do
  sweep run --root="$root" --job="$job"
  rc=$?
  case $rc in
    0) ;;
    130|143)
      echo "job $job stopped (exit $rc); rerun $0 $root to resume" >&2
      exit "$rc" ;;
    *) failed+=("$job") ;;
  esac
done
sweep status --root="$root"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed jobs: ${failed[*]} (see ROOT/<job>/job.json)" >&2
  exit 1
fi
echo "merge with: python -m disentax.sweep merge --root=$root"
