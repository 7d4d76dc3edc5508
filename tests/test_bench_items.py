"""The `fractional`, `evaluation` and `compile` benchmarks
(disentax/bench/fractional.py, evaluation.py, compile.py): known answers
only, never timings.

The normal encoder the fractional one is timed against has its parameter
count; a DEFT train chunk compiles nothing after its first chunk, across
stages and hyperparameter values; and each item's `measure` returns
well-formed rows (run here at the smallest sizes).  (tests/test_kernels.py:
the fractional encoder's fast groups compute the vmapped ones' function.)
"""

import math

import jax
import jax.numpy as jnp
import pytest

from disentax.bench import Row, compile as compile_item, evaluation
from disentax.bench import flops, fractional
from disentax.models.conv import LITE_CHANNELS, FractionalEncoder


def check_rows(rows, item):
  assert rows and all(isinstance(r, Row) and r.item == item for r in rows)
  for r in rows:
    assert r.case and r.unit
    assert math.isfinite(r.disentax) and r.disentax >= 0, r
    if r.baseline is not None:
      assert math.isfinite(r.baseline) and r.baseline > 0, r


def abstract_count(module, image_shape):
  shapes = jax.eval_shape(module.init, jax.random.key(0),
                          jnp.zeros((1, *image_shape)))
  return fractional.count_params(shapes)


def test_encoder_flops_in_closed_form_and_counted_from_the_jaxpr():
  # One lite sub-encoder on 64x64x1 (Table 1), K = 100 latents: convs
  # 2 x (32^2 16 8 + 16^2 16 8 8 + 8^2 16 8 16 + 4^2 16 16 16), dense
  # 2 x 256 x 64, heads 2 x 2 x 64 x 100.
  lite = fractional.conv_encoder_flops(LITE_CHANNELS, 100, 64)
  assert lite == 2 * (131_072 + 262_144 + 131_072 + 65_536) + 32_768 + 25_600
  image = jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32)
  for module, expected in [
      (FractionalEncoder(1000, 10, fractional.KERNEL_SIZES), 10 * lite),
      (fractional.NormalEncoder((38, 38, 76, 75), 1000),
       fractional.conv_encoder_flops((38, 38, 76, 75), 1000, 64))]:
    params = jax.eval_shape(module.init, jax.random.key(0), image)
    assert flops.jaxpr_flops(
        jax.make_jaxpr(module.apply)(params, image)) == expected


def test_parameter_counts_in_closed_form_and_matched():
  # DEFT journal Table 1 lite sub-encoder on 64x64x1: convs 136 + 1,032 +
  # 2,064 + 4,112, dense 16,448, heads 2 x 65 per latent.
  assert fractional.fractional_params(10, 1000, 64) == 10 * 23_792 + 130_000
  for groups, latents, side in [(10, 1000, 64), (1000, 1000, 64),
                                (2, 100, 32), (3, 6, 16)]:
    target = fractional.fractional_params(groups, latents, side)
    assert abstract_count(FractionalEncoder(latents, groups),
                          (side, side, 1)) == target
    channels = fractional.matched_channels(target, latents, side)
    count = fractional.conv_encoder_params(channels, latents, side)
    assert abstract_count(fractional.NormalEncoder(channels, latents),
                          (side, side, 1)) == count
    assert abs(count - target) <= 0.01 * target, (groups, channels)
    a = channels[0]
    assert channels[:3] == (a, a, 2 * a)
  for groups in (10, 100, 500, 1000):  # the paper's setting: within 0.5%
    target = fractional.fractional_params(groups, 1000, 64)
    count = fractional.conv_encoder_params(
        fractional.matched_channels(target, 1000, 64), 1000, 64)
    assert abs(count - target) <= 0.005 * target


@pytest.mark.slow  # CI time; run with -m slow
def test_fractional_measure_rows(monkeypatch):
  monkeypatch.setattr(fractional, "QUICK", fractional.Sizes(
      batch_size=2, image_size=16, num_latents=4, groups=(2,), repeats=1))
  rows = fractional.measure(quick=True)
  check_rows(rows, "fractional")
  assert [r.note.split(";")[0] for r in rows] == ["kernels reference",
                                                  "kernels fast"]


@pytest.mark.slow  # CI time; run with -m slow
def test_compile_measure_no_recompilation(monkeypatch):
  monkeypatch.setattr(compile_item, "QUICK_CONFIGS", ())
  rows = compile_item.measure(quick=True)
  check_rows(rows, "compile")
  compiled, crossing, new_values, rebuilt = rows
  assert compiled.unit == "s (XLA compile)" and compiled.disentax > 0
  assert crossing.disentax == 0 and new_values.disentax == 0
  # Stages 0, 0 (chunks of 4 steps, stages of 10), 0.5 (crosses), 1, 1.
  assert crossing.note.endswith("0, 0, 0.5, 1, 1")
  assert rebuilt.disentax > 0 and "identical" in rebuilt.note


@pytest.mark.slow  # CI time; run with -m slow
def test_evaluation_measure_rows(monkeypatch):
  monkeypatch.setattr(evaluation, "QUICK", evaluation.Sizes(
      preset="tiny", members=2, steps=2, warm=False,
      battery={"mig": {"num_train": 100}, "unsupervised": {"num_train": 100}}))
  monkeypatch.delenv(evaluation.ENV_WORKDIR, raising=False)
  rows = evaluation.measure(quick=True)
  check_rows(rows, "evaluation")
  assert [r.case.split(",")[0] for r in rows] == ["mig", "unsupervised",
                                                  "total"]
  assert all("2 members" in r.case for r in rows)
