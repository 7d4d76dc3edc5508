"""The methods DEFT is compared with (DEFT journal Tables 3 and 4), at the
settings of its Table 3, per dataset: 50 seeds each, so that with
`experiments/deft.py:<dataset>` they fill the failure-rate table (Table 4).

Presets `<method>_<dataset>`, method in beta_vae, beta_tcvae, annealed_vae,
cascade_vae; dataset in color, dsprites, scream, smallnorb; plus cpu and
tiny (beta-VAE at the dSprites value).

The training setting is the journal's section 5.1 for every method (Adam lr
5e-4, b1 0, b2 0.99, batch 256), with the standard encoder of its Table 1
(4x4 kernels) and as many latents as DEFT has on that dataset (G x K).
Ours, because the paper does not give them: the number of steps (DEFT's
G x N on that dataset), CascadeVAE-C opening one latent every
num_steps / num_latents steps (so every latent opens), AnnealedVAE's
gamma and iteration_threshold (dlib-google's 1000 and 100,000).
"""

from experiments.common import check_preset, dsprites_config
from experiments.deft import DATASETS, JOURNAL_TABLE_2, use_dataset

# DEFT journal Table 3, per dataset (color, dsprites, scream, smallnorb).
TABLE_3 = {
    "annealed_vae": ("c_max", {"color": 10.0, "dsprites": 5.0,
                               "scream": 25.0, "smallnorb": 5.0}),
    "beta_tcvae": ("beta", {"color": 10.0, "dsprites": 10.0, "scream": 6.0,
                            "smallnorb": 1.0}),
    "beta_vae": ("beta", {"color": 16.0, "dsprites": 16.0, "scream": 6.0,
                          "smallnorb": 1.0}),
    "cascade_vae": ("beta_high", {"color": 10.0, "dsprites": 10.0,
                                  "scream": 10.0, "smallnorb": 10.0}),
}
OBJECTIVE_NAMES = {"cascade_vae": "cascade_vae_c"}
PRESETS = tuple(f"{m}_{d}" for m in TABLE_3 for d in DATASETS) + (
    "cpu", "tiny")


def get_config(preset: str | None = None):
  preset = check_preset(preset, PRESETS, "beta_vae_dsprites")
  if preset in ("cpu", "tiny"):
    config, _ = dsprites_config(preset)
    config.objective.name = "beta_vae"
    config.objective.beta = (TABLE_3["beta_vae"][1]["dsprites"],)
    return config
  method, dataset = next((m, preset[len(m) + 1:]) for m in TABLE_3
                         if preset.startswith(m + "_"))
  config, _ = dsprites_config("paper")
  groups, per_group, stage_steps, _ = JOURNAL_TABLE_2[dataset]
  config.model.num_latents = groups * per_group
  config.model.encoder_kernel_sizes = (4, 4, 4, 4)  # journal Table 1
  config.train.batch_size = 256                     # journal 5.1
  config.train.learning_rate = 5e-4
  config.train.adam_b1, config.train.adam_b2 = 0.0, 0.99
  config.train.num_steps = groups * stage_steps
  use_dataset(config, dataset)
  reconstruction = config.objective.base_options.reconstruction
  name, values = TABLE_3[method]
  config.objective = {"name": OBJECTIVE_NAMES.get(method, method),
                      name: values[dataset], "reconstruction": reconstruction}
  if method == "cascade_vae":
    config.objective.stage_steps = (config.train.num_steps
                                    // config.model.num_latents)
  return config
