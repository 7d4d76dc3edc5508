"""Known-answer tests of the benchmark package (timings never go in
tests): the PyTorch reference computes disentax's function, the table's
arithmetic, the CLI's item checking, and the items' plumbing end to end at
the smallest sizes (numbers positive and finite, not fast)."""

import math
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import bench
from disentax.bench import Row, format_table
from disentax.bench import __main__ as cli
from disentax.bench import data, flops, train_step
from disentax.experiment import build
from disentax.models.vae import reparameterisation_noise
from tests.conftest import run_module


def random_params(model, x, noise_key):
  """Parameters of `model` with random values, biases included (Flax
  initialises them to zero, which would hide a misplaced bias), without
  compiling Flax's initialisers (seconds of XLA:CPU time)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x,
                          noise_key)["params"]
  rng = np.random.default_rng(0)

  def fill(leaf):
    fan_in = math.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else 100
    return jnp.asarray(rng.normal(size=leaf.shape) / math.sqrt(fan_in),
                       jnp.float32)

  return jax.tree.map(fill, shapes)


@pytest.mark.parametrize("image_size,kernel_sizes,kernels", [
    (64, (4, 4, 2, 2), "fast"),       # the benchmarked architecture
    (32, (4, 4, 2, 2), "reference"),
    (32, (3, 5, 4, 1), "reference"),  # odd kernels: asymmetric SAME padding
])
def test_torch_reference_computes_the_same_loss_and_gradients(
    image_size, kernel_sizes, kernels):
  torch = pytest.importorskip("torch")
  from disentax.bench import torch_reference as ref
  config = train_step.standard_config(1, image_size, 4, kernels)
  config.model.encoder_kernel_sizes = kernel_sizes
  exp = build(config)
  _, x = jax.jit(exp.dataset.sample, static_argnums=1)(jax.random.key(3), 4)
  noise_key = jax.random.key(5)
  params = random_params(exp.model, x, noise_key)
  beta = train_step.BETA

  def loss_fn(p):
    output = exp.model.apply({"params": p}, x, noise_key)
    loss = exp.objective.loss(output, x, {"beta": jnp.float32(beta)}, 0)[0]
    return loss, output

  (loss, output), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      params)
  noise = reparameterisation_noise(noise_key, output.mean.shape)

  model = ref.load_flax_params(
      ref.TorchConvVAE(image_size, 1, config.model.num_latents, kernel_sizes),
      params, image_size)
  xt = ref.nchw(x)
  outputs = model(xt, torch.from_numpy(np.array(noise)))
  torch_loss = ref.beta_vae_loss(outputs, xt, beta)
  torch_loss.backward()

  mean, logvar, z, logits = (t.detach().numpy() for t in outputs)
  np.testing.assert_allclose(mean, output.mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logvar, output.logvar, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(z, output.z, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits.transpose(0, 2, 3, 1), output.logits,
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(torch_loss.item(), float(loss), rtol=1e-5)
  expected = ref.torch_arrays_from_flax(grads, image_size)
  got = {name: p.grad.numpy() for name, p in model.named_parameters()}
  assert sorted(got) == sorted(expected)
  for name, grad in got.items():
    scale = np.abs(expected[name]).max()
    np.testing.assert_allclose(grad, expected[name], rtol=0,
                               atol=1e-5 * scale + 1e-7, err_msg=name)


def test_same_padding_is_xla_same():
  pytest.importorskip("torch")
  from disentax.bench.torch_reference import same_padding
  assert same_padding(64, 4, 2) == (1, 1)
  assert same_padding(32, 2, 2) == (0, 0)
  assert same_padding(64, 3, 2) == (0, 1)   # the smaller half first
  assert same_padding(15, 4, 2) == (1, 2)
  assert same_padding(16, 1, 2) == (0, 0)


def test_row_ratio_and_table():
  row = Row("train_step", "batch 64", 73.0, 146.0, "ms/step",
            baseline_name="PyTorch", target="<= 0.5x PyTorch", note="n")
  assert row.ratio == 0.5
  assert Row("x", "c", 1.0, None, "s").ratio is None
  assert Row("x", "c", 1.0, 0.0, "s").ratio is None
  table = format_table([row, Row("seeds", "8 seeds", 12345.0, None,
                                 "seed-steps/s")]).splitlines()
  assert table[2] == ("| train_step | batch 64 | 73 | 146 (PyTorch) | "
                      "ms/step | 0.5 | <= 0.5x PyTorch | n |")
  assert table[3] == "| seeds | 8 seeds | 1.23e+04 |  | seed-steps/s |  |  |  |"


def test_cli_resolves_items_in_registry_order():
  assert cli.resolve_items(["data", "train_step", "data"]) == ["train_step",
                                                               "data"]
  with pytest.raises(ValueError) as error:
    cli.resolve_items(["train_step", "nope"])
  assert "nope" in str(error.value)
  assert ", ".join(bench.ITEMS) in str(error.value)


def test_cli_names_an_item_without_module(monkeypatch):
  monkeypatch.setitem(bench.ITEMS, "ghost", "disentax.bench.no_such_item")
  with pytest.raises(ValueError, match="ghost have no module yet"):
    cli.resolve_items(["ghost"])


def test_cli_rejects_unknown_item_before_running_anything():
  result = run_module("disentax.bench", "--items=train_step,nope",
                      check=False)
  assert result.returncode == 2
  assert f"allowed: {', '.join(bench.ITEMS)}" in result.stderr
  assert result.stdout == ""


def test_cli_reports_a_missing_optional_dependency(monkeypatch):
  def measure(quick):
    raise ModuleNotFoundError("No module named 'torch'", name="torch")

  module = types.ModuleType("fake_bench_item")
  module.measure = measure
  monkeypatch.setitem(sys.modules, "fake_bench_item", module)
  monkeypatch.setitem(bench.ITEMS, "fake", "fake_bench_item")
  rows, note = cli.run_item("fake", quick=True)
  assert rows == []
  assert "needs torch" in note and "pip install -e '.[bench]'" in note


def test_timings_alternate_and_the_fastest_counts():
  calls = []

  def fake(name, times):
    times = iter(times)
    return lambda: calls.append(name) or next(times)

  best = bench.fastest_in_alternation(
      [fake("normal", [3.0, 1.0, 2.0]), fake("fractional", [5.0, 6.0, 4.0])],
      rounds=3)
  assert best == [1.0, 4.0]
  assert calls == ["normal", "fractional"] * 3


def _check_rows(rows, item, count):
  assert len(rows) == count
  for row in rows:
    assert row.item == item
    assert math.isfinite(row.disentax) and row.disentax > 0
    assert math.isfinite(row.baseline) and row.baseline > 0
    assert math.isfinite(row.ratio) and row.ratio > 0


TINY = dict(image_size=16, batch_size=4, repeats=1)


def test_torch_step_timing_runs():
  pytest.importorskip("torch")
  timer, name = train_step.torch_step_timer(
      train_step.Sizes(steps=1, torch_warmup=1, **TINY), pool=2)
  seconds = timer()
  assert math.isfinite(seconds) and seconds > 0
  assert name.startswith("PyTorch ")


class _FakeProgram:
  """A compiled train program whose steps take a set time per model.kernels
  (divided by the micro-batch count)."""
  exp = types.SimpleNamespace(
      layout=types.SimpleNamespace(members="unroll", loop="host"))
  compile_seconds = 1.0

  def __init__(self, config):
    self.per_step = {"fast": 0.05,
                     "reference": 0.2}[config.model.kernels]
    self.per_step /= config.train.micro_batches

  def run(self, steps):
    return self.per_step * steps


def test_train_step_rows(monkeypatch):
  monkeypatch.setattr(train_step, "compiled_program", _FakeProgram)
  monkeypatch.setattr(train_step, "torch_step_timer",
                      lambda sizes: (lambda: 0.1, "PyTorch x"))
  monkeypatch.setattr(train_step, "matmul_flops_per_second",
                      lambda side: 1e11)
  rows = train_step.measure(True)
  _check_rows(rows, "train_step", 4)
  *steps, roofline = rows
  assert [r.ratio for r in steps] == pytest.approx([0.5, 2.0, 0.125])
  # 32x32 quick sizes: 3 forward passes of batch 16 at 0.05 s per step.
  step_flops = 3 * 16 * flops.forward_flops(
      train_step.standard_config(1, 32, 16), 1)
  assert roofline.unit == "GFLOP/s" and roofline.baseline == 100
  assert roofline.disentax == pytest.approx(step_flops / 0.05 / 1e9)
  share = step_flops / 0.1 / 1e11
  assert f"PyTorch's step reaches {share:.0%}" in roofline.note
  assert f"would need {2 * share:.0%}" in roofline.note
  assert rows[0].target == rows[2].target == "<= 0.5x PyTorch"
  assert rows[1].target == ""
  assert "fast kernels" in rows[0].case and "reference" in rows[1].case
  assert "pre-rendered" in rows[0].note and "conv_transpose" in rows[1].case
  assert "micro_batches=4" in rows[2].case


def test_matmul_rate_counts_two_flops_per_multiply_add(monkeypatch):
  monkeypatch.setattr(train_step, "seconds_per_call",
                      lambda fn, repeats, warmup: 0.5)
  assert train_step.matmul_flops_per_second(64) == 2 * 64 ** 3 / 0.5


def test_train_step_without_torch_says_how_to_install(monkeypatch):
  monkeypatch.setattr(train_step, "compiled_program", _FakeProgram)
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
  rows = train_step.measure(True)
  assert [r.baseline for r in rows[:3]] == [None] * 3
  assert all("pip install -e '.[bench]'" in r.note for r in rows[:3])
  assert "PyTorch" not in rows[3].note


@pytest.mark.slow  # CI time; run with -m slow
def test_data_item_end_to_end_at_the_smallest_sizes():
  rows = data.measure(True, data.Sizes(seeds=(1,), calls=1, steps=1, **TINY))
  _check_rows(rows, "data", 3)


def test_sizes_overrides_are_typed_by_the_defaults():
  from disentax.bench import fractional, with_sizes
  sizes = with_sizes(fractional.FULL, ["groups=10/100", "repeats=5",
                                       "kernels=fast"])
  assert sizes.groups == (10, 100) and sizes.repeats == 5
  assert sizes.kernels == ("fast",)
  assert sizes.batch_size == fractional.FULL.batch_size
  with pytest.raises(ValueError, match=r"--sizes 'grups=1'.*groups"):
    with_sizes(fractional.FULL, ["grups=1"])
  with pytest.raises(ValueError, match=r"repeats takes a value like 10"):
    with_sizes(fractional.FULL, ["repeats=many"])
