"""From measured IFP distributions to a DEFT config (beyond the DEFT paper,
whose authors pick the stage pressures by hand and name "an automatic way to
adjust the best separation of IFP distribution" as missing).

  python -m disentax.propose --workdir=ANNEALING_DIR [--reference=70,30,12,1]
      [--quantile=0.1] [--out=experiments/deft_proposed.py]

Reads the evaluated per-factor annealing test of ANNEALING_DIR (results rows
with metric `ifp` and hyperparameter `factor`), groups the factors whose IFP
distributions separate (`disentax.ifp.propose_stages`), prints the plan and
its comparison with the reference pressures, and writes a config file whose
`get_config()` is the DEFT dSprites preset (`experiments/deft.py:dsprites`)
with the proposed G, K and pressures.
"""

from __future__ import annotations

from absl import app, flags

from disentax import cli, ifp
from disentax.proposal import propose, write_config

_WORKDIR = flags.DEFINE_string("workdir", None, "an evaluated annealing-test "
                               "workdir")
_REFERENCE = flags.DEFINE_list("reference", ["70", "30", "12", "1"],
                               "hand-picked pressures to compare with "
                               "(default: the DEFT paper's dSprites)")
_QUANTILE = flags.DEFINE_float("quantile", 0.1, "separation quantile")
_OUT = flags.DEFINE_string("out", None, "write the proposed DEFT config here")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    reference = [float(b) for b in _REFERENCE.value]
  except ValueError:
    raise app.UsageError(f"--reference={_REFERENCE.value}: give numbers")
  plan, _ = propose(_WORKDIR.value, _QUANTILE.value)
  print(ifp.format_plan(plan))
  print("\n".join(ifp.compare_with(plan, reference)))
  if _OUT.value:
    write_config(_OUT.value, plan, _WORKDIR.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  cli.run(main)
