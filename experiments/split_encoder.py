"""Split encoder (split-encoder paper, ICLR 2020 submission) on dSprites:
beta-VAE with per-latent unshared encoder sub-networks, and the paper's two
ablations.  Model options: disentax/models/conv.py (`encoder`,
`noise_correlation`).

Presets (`experiments/split_encoder.py:PRESET`):
  paper (default)  split encoder, beta in {1, 2, 4, 6, 8, 16} x 50 seeds:
        beta 1 is the paper's "vanilla VAE + split encoder" (Figs. 3-4),
        beta > 1 its appendix D beta-VAE (which states no beta; this is the
        dlib-google grid).  The paper gives no training settings: dlib-google's
        (experiments/common.py).
  correlated_noise  ablation of section 5.1 (Fig. 2): the standard encoder,
        vanilla VAE (beta 1), reparameterisation noise correlation s = 0.9.
  sharing  ablation of section 5.1 (Fig. 2): the "sharing-parameter encoder"
        (conv features flattened straight into the latent heads), vanilla
        VAE (beta 1), independent noise.
  cpu   split encoder, beta in {1, 8} x 3 seeds, 32x32, a few minutes.
  tiny  split encoder, beta in {1, 4} x 2 seeds, seconds.

The baseline (standard encoder, independent noise) is experiments/beta_vae.py.

  python -m disentax.main --config=experiments/split_encoder.py:cpu --workdir=runs/split
"""

from experiments.common import dsprites_config

PRESETS = ("paper", "correlated_noise", "sharing", "cpu", "tiny")


def get_config(preset: str | None = None):
  preset = preset or "paper"
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; allowed: "
                     f"{', '.join(PRESETS)}")
  ablation = preset in ("correlated_noise", "sharing")
  config, _ = dsprites_config("paper" if ablation else preset)
  config.objective.name = "beta_vae"
  config.objective.beta = {
      "paper": (1.0, 2.0, 4.0, 6.0, 8.0, 16.0),
      "correlated_noise": (1.0,), "sharing": (1.0,),
      "cpu": (1.0, 8.0), "tiny": (1.0, 4.0)}[preset]
  config.model.encoder = {"correlated_noise": "standard",
                          "sharing": "sharing"}.get(preset, "split")
  # Section 5.1: eps ~ N(0, (1 - s) I + s 11^T) with s = 0.9.
  config.model.noise_correlation = 0.9 if preset == "correlated_noise" else 0.0
  return config
