"""The trainer, in four parts read in this order:

  train_state.py  the stacked per-member state a checkpoint holds, its
                  initialisation from each member's seed and its restore;
  step.py         the member step: loss -> gradients -> update -> freeze on
                  divergence, one pure function of one member;
  layouts.py      how that step is laid out: over members (vmap, unroll,
                  sequential), over steps (scan, host loop), over the batch
                  (micro-batches); where 'auto' is decided;
  trainer.py      the loop: resume, chunks of steps, logging, tracing,
                  checkpoints, SIGTERM (`train(config, workdir)`).
"""
