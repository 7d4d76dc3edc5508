"""beta-TCVAE on dSprites: seeds x the dlib-google beta grid, one program.

recon + KL + (beta - 1) * TC with the minibatch-weighted-sampling TC estimate
(dlib-google's form; alpha = gamma = 1, see disentax/objectives/beta_tcvae.py).
Minibatch stratified sampling: set `config.objective.estimator = 'mss'`.

Presets (`experiments/beta_tcvae.py:PRESET`, see experiments/common.py):
  paper (default) beta in {1, 2, 4, 6, 8, 10} x 50 seeds = 300 models.
  cpu   beta in {1, 10} x 3 seeds, 32x32.
  tiny  beta in {1, 4} x 2 seeds, seconds.

  python -m disentax.main --config=experiments/beta_tcvae.py:cpu --workdir=runs/btcvae
  python -m disentax.evaluate --workdir=runs/btcvae
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, preset = dsprites_config(preset)
  config.objective.name = "beta_tcvae"
  config.objective.estimator = "mws"   # dlib-google implements MWS only
  config.objective.form = "kl"         # recon + KL + (beta - 1) TC
  config.objective.alpha = 1.0
  config.objective.gamma = 1.0
  # disentanglement_lib beta-TCVAE sweep (Locatello et al. 2019, Table 2;
  # unsupervised_study_v1/sweep.py): beta in {1, 2, 4, 6, 8, 10}.  The DEFT
  # journal (Table 3) uses beta 10 on dSprites, the largest of these.
  config.objective.beta = {
      "paper": (1.0, 2.0, 4.0, 6.0, 8.0, 10.0),
      "cpu": (1.0, 10.0),
      "tiny": (1.0, 4.0)}[preset]
  return config
