"""The `accelerator` benchmark (disentax/bench/accelerator.py, flops.py):
the model FLOPs counted from the architecture against closed forms, the peak table,
and the item's arithmetic from known timings.  No timing is asserted."""

import math

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from disentax.bench import Skipped, accelerator, flops
from disentax.bench import __main__ as cli
from disentax.bench.train_step import StepTiming, standard_config
from disentax.config import load_config

# One 64x64x1 image through the standard architecture with 4x4 kernels
# (beta-VAE / DEFT papers), 2 FLOPs per multiply-add.
STANDARD_CONVS = 2 * (32 * 32 * 32 * 16 * 1      # 64 -> 32, 1 -> 32
                      + 16 * 16 * 32 * 16 * 32   # 32 -> 16, 32 -> 32
                      + 8 * 8 * 64 * 16 * 32     # 16 -> 8, 32 -> 64
                      + 4 * 4 * 64 * 16 * 64)    # 8 -> 4, 64 -> 64
# Transposed convolutions: every input pixel meets all 16 taps.
STANDARD_UPSAMPLINGS = 2 * (4 * 4 * 16 * 64 * 64 + 8 * 8 * 16 * 64 * 32
                            + 16 * 16 * 16 * 32 * 32 + 32 * 32 * 16 * 32 * 1)


def dense(latents, hidden=256, flat=1024):
  """Encoder dense + both heads, decoder's two dense layers."""
  return 2 * (flat * hidden + 2 * hidden * latents
              + latents * hidden + hidden * flat)


def test_standard_architecture_in_closed_form():
  config = standard_config(1, 64, 64)
  config.model.encoder_kernel_sizes = (4, 4, 4, 4)
  per_image = STANDARD_CONVS + STANDARD_UPSAMPLINGS + dense(10)
  assert per_image == 32_521_216
  assert flops.forward_flops(config, 1) == per_image
  assert flops.forward_flops(config, 3) == 3 * per_image
  # The architecture's count, whichever kernels train.
  for kernels in ("reference", "fast"):
    config.model.kernels = kernels
    assert flops.forward_flops(config, 1) == per_image


def test_deft_fractional_encoder_in_closed_form():
  # DEFT journal Table 1 lite sub-encoder (8, 8, 16, 16, dense 64), G = 4
  # groups of K = 3 latents (Table 2, dSprites), standard decoder.
  lite = 2 * (32 * 32 * 8 * 16 * 1 + 16 * 16 * 8 * 16 * 8
              + 8 * 8 * 16 * 16 * 8 + 4 * 4 * 16 * 16 * 16
              + 256 * 64 + 2 * 64 * 3)
  decoder = STANDARD_UPSAMPLINGS + 2 * (12 * 256 + 256 * 1024)
  config = load_config("experiments/deft.py:dsprites")
  assert flops.forward_flops(config, 1) == 4 * lite + decoder == 21_111_808
  # A train step: 3 forwards of batch 256 (journal 5.1).
  assert flops.train_step_flops(config) == 3 * 256 * 21_111_808


def _count(fn, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  return flops.jaxpr_flops(jax.make_jaxpr(fn)(*args))


def test_jaxpr_flops_of_primitives():
  nhwc = ("NHWC", "HWIO", "NHWC")
  # Transposed convolution: input pixels x taps x in x out, not the zeros
  # its dilated input holds.
  transposed = lambda x, k: lax.conv_transpose(x, k, (2, 2), "SAME",
                                               dimension_numbers=nhwc)
  assert _count(transposed, (2, 5, 5, 3), (4, 4, 3, 7)) == (
      2 * 2 * 25 * 16 * 3 * 7)
  # Grouped convolution: each output channel sees its group's inputs only.
  grouped = lambda x, k: lax.conv_general_dilated(
      x, k, (1, 1), "VALID", dimension_numbers=nhwc, feature_group_count=2)
  assert _count(grouped, (1, 6, 6, 4), (3, 3, 2, 8)) == 2 * 16 * 8 * 9 * 2
  # Batched matrix product; a scan's body counts once per iteration; a
  # cond its costliest branch.
  assert _count(lambda a, b: jnp.einsum("gij,gjk->gik", a, b),
                (3, 4, 5), (3, 5, 6)) == 2 * 3 * 4 * 6 * 5
  scanned = lambda a, b: lax.scan(lambda c, _: (c @ b, None), a, None,
                                  length=7)[0]
  assert _count(scanned, (2, 4), (4, 4)) == 7 * 2 * 2 * 4 * 4
  branched = lambda a, b: lax.cond(a.sum() > 0, lambda: a @ b,
                                   lambda: a @ (b @ b.T @ b))
  # The costlier branch: two 4x4x4 products and one 2x4x4.
  assert _count(branched, (2, 4), (4, 4)) == 2 * (2 * 4 * 4 * 4 + 2 * 4 * 4)
  with pytest.raises(ValueError, match="while loop"):
    _count(lambda a: lax.while_loop(lambda c: c.sum() < 9, lambda c: c @ c,
                                    a), (3, 3))


def test_device_peaks():
  assert accelerator.device_peak("NVIDIA H100 80GB HBM3").tf32 == 494.7
  assert accelerator.device_peak("NVIDIA H100 PCIe").tf32 == 378.0
  assert accelerator.device_peak("NVIDIA H200").fp32 == 66.9
  assert accelerator.device_peak("NVIDIA A100-SXM4-80GB").tf32 == 156.0
  assert accelerator.device_peak("cpu") is None


def test_skipped_on_a_cpu_backend_with_a_note():
  if jax.default_backend() != "cpu":
    pytest.skip("runs where the backend is cpu")
  with pytest.raises(Skipped, match="backend is cpu"):
    accelerator.measure(quick=False)
  rows, note = cli.run_item("accelerator", quick=False)
  assert rows == [] and "skipped" in note and "--quick" in note


def test_table4_cells():
  cells, seeds = accelerator.table4_cells()
  assert seeds == 50 and len(cells) == 5 * 4
  assert sum(is_deft for _, is_deft in cells) == 4
  assert {c.train.num_steps for c, _ in cells} == {80_000}


def test_rows_from_known_timings(monkeypatch):
  # Every program steps in 0.5 s (two seeds -> 4 seed-steps/s), except
  # with the fast kernels: 0.25 s.
  monkeypatch.setattr(accelerator, "time_train_step",
                      lambda config, steps, repeats: StepTiming(
                          1.0, 0.25 if config.model.get("kernels") ==
                          "fast" else 0.5, "vmap/scan"))
  deft = load_config("experiments/deft.py:dsprites")
  compared = load_config("experiments/deft_table3.py:beta_vae_dsprites")
  monkeypatch.setattr(accelerator, "table4_cells",
                      lambda: ([(deft, True), (compared, False)], 50))
  sizes = accelerator.Sizes(deft="experiments/deft.py:dsprites",
                            compared="experiments/deft_table3.py:"
                            "beta_vae_dsprites", seeds=2, steps=1, repeats=1)
  rows = accelerator.measure(quick=True, sizes=sizes, peak_tflops=100.0)
  deft_flops = 3 * 256 * 21_111_808
  compared_flops = 3 * 256 * (STANDARD_CONVS + STANDARD_UPSAMPLINGS
                              + dense(12))
  assert [r.unit for r in rows] == ["seed-steps/s", "TFLOP/s"] * 2 + [
      "seed-steps/s", "min", "h (projected)"]
  fast = rows.pop(4)  # DEFT with the fast kernels: 2x the rate
  assert "fast kernels" in fast.case and fast.ratio == 2.0
  assert rows[0].disentax == rows[2].disentax == 4.0
  assert rows[1].disentax == pytest.approx(4 * deft_flops / 1e12)
  assert rows[1].ratio == pytest.approx(4 * deft_flops / 100e12)
  assert rows[3].disentax == pytest.approx(4 * compared_flops / 1e12)
  # 2 seeds x 80,000 steps at 4 seed-steps/s.
  assert rows[4].disentax == pytest.approx(2 * 80_000 / 4 / 60)
  assert rows[4].ratio == pytest.approx(rows[4].disentax / 15)
  # Each cell runs at the FLOP/s measured for its kind: the DEFT cell at
  # 4 seed-steps/s, the beta-VAE cell at 4 too (it *is* the compared
  # program), 50 seeds x 80,000 steps each.
  assert rows[5].disentax == pytest.approx(2 * 50 * 80_000 / 4 / 3600)
  assert all(math.isfinite(r.disentax) for r in rows)
