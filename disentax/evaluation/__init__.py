"""Evaluation: the metrics (`disentax.metrics`) applied to trained members.

  members.py  every member's functions an evaluator may call
              (`TrainedMembers`), jitted once per experiment, and
              `open_checkpoint`, the one way a stored run is restored;
  trace.py    the evaluators of `config.eval.trace`, scored every
              `config.eval.trace_every` steps while training (trace.npz);
  job.py      the evaluation job: the primary metric and the battery on a
              workdir's latest checkpoint, written to WORKDIR/results/;
  external.py the same metrics on a representation function disentax did
              not train (`disentax.evaluate_representation`), one member
              per evaluation seed, written in the same schema.

Both paths call the same evaluators the same way (`metric.score(members,
rng)` with the evaluation seed's key), so a trace point and the job agree
on the same state and options.
"""
