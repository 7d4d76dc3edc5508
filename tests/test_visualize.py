"""Pictures of trained members (disentax.reporting.visualize and `python -m
disentax.visualize`): which members, what is drawn (checked on the arrays
and on the files read back), and the traversals the evaluation job draws
through the same path."""

import os

import jax
import numpy as np
import pytest
from PIL import Image, ImageSequence
from scipy import stats

from disentax.evaluation import job
from disentax.evaluation.members import MemberFunctions, open_checkpoint
from disentax.experiment import build
from disentax.reporting import pictures, tables, visualize
from disentax.training import trainer
from disentax.training.train_state import init_state
from experiments import autoencoder
from tests.conftest import run_module, tiny_config
from tests.synthetic_runs import ROWS, make_row

STEPS = visualize.TRAVERSAL_STEPS


def read_png(path):
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def assert_not_blank(pixels, what):
  """Some pixel differs from the others: not one colour throughout."""
  assert pixels.std() > 0, what
  assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 1, what


# --------------------------------------------------------------------------
# Which members.


def test_members_spec_is_parsed_or_refused():
  assert visualize.parse_members("best") == "best"
  assert visualize.parse_members(" all ") == "all"
  assert visualize.parse_members("3,1,3") == [3, 1]
  for bad in ("bestest", "", "1,,2", "-1", "1.5", "best,2"):
    with pytest.raises(ValueError, match=(
        rf"--members='{bad.strip()}'; allowed: best, median, worst, all or "
        "comma-separated member ids")):
      visualize.parse_members(bad)


def test_ranks_and_ids_choose_members():
  # ROWS: member 0 MIG .05, 1 .2, 2 .3, 3 non-finite (never chosen).
  assert visualize.ranked_members(ROWS, "mig") == {
      "best": (0.3, 2), "median": (0.2, 1), "worst": (0.05, 0)}
  assert visualize.choose_members("best", ROWS, "mig", 4) == [(2, "best")]
  assert visualize.choose_members("worst", ROWS, "mig", 4) == [(0, "worst")]
  assert visualize.choose_members("all", None, "mig", 3) == [
      (0, None), (1, None), (2, None)]
  assert visualize.choose_members([3, 0], None, "mig", 4) == [(3, None),
                                                               (0, None)]
  with pytest.raises(ValueError, match=r"member id\(s\) \[4, 7\] out of "
                     r"range; the run has 4 members, 0\.\.3"):
    visualize.choose_members([1, 4, 7], ROWS, "mig", 4)
  with pytest.raises(ValueError, match="needs the run's results: run "
                     "`python -m disentax.evaluate` first"):
    visualize.choose_members("median", None, "mig", 4)
  with pytest.raises(ValueError, match="no member has a finite mig"):
    visualize.choose_members("best", [ROWS[3]], "mig", 4)


def test_bad_requests_fail_before_any_checkpoint_is_read(tmp_path):
  empty = str(tmp_path)
  with pytest.raises(ValueError, match="--members='top'; allowed"):
    visualize.visualize(str(tmp_path / "missing"), "top")
  with pytest.raises(ValueError, match="num must be >= 1"):
    visualize.visualize(empty, "all", num=0)
  # A rank needs the results; member ids and 'all' only the checkpoint.
  with pytest.raises(ValueError, match=r"--members=best ranks .* does not "
                     r"exist: run `python -m disentax.evaluate --workdir="):
    visualize.visualize(empty, "best")
  with pytest.raises(FileNotFoundError, match="no checkpoints in"):
    visualize.visualize(empty, "0")
  assert os.listdir(empty) == []


# --------------------------------------------------------------------------
# Pure computations.


def test_factor_responses_are_mean_codes_per_value():
  factors = np.array([[0, 2], [1, 2], [0, 0], [1, 1], [0, 1]])
  codes = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0],
                    [9.0, 50.0]])
  first, second = visualize.factor_responses(factors, codes, (3, 3))
  # Factor 0, value 0: points 0, 2, 4; value 1: points 1, 3; value 2: none.
  np.testing.assert_array_equal(first[:2], [[5.0, 30.0], [5.0, 30.0]])
  assert np.isnan(first[2]).all()
  # Factor 1: value 0 point 2, value 1 points 3, 4, value 2 points 0, 1.
  np.testing.assert_array_equal(second, [[5.0, 30.0], [8.0, 45.0],
                                         [2.0, 15.0]])
  with pytest.raises(ValueError, match="factors"):
    visualize.factor_responses(factors, codes[:4], (3, 3))


def test_metric_correlations_are_scipys_spearman():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=8), rng.normal(size=8)
  rows = []
  for m in range(8):
    row = make_row(m, float(a[m]))
    row["metrics"].update({"b": float(b[m]), "c": float(-a[m] ** 3),
                           "d": 1.0})
    rows.append(row)
  rows[2]["metrics"]["b"] = None          # b missing for member 2
  rows[5]["status"] = "non_finite"        # member 5 left out of every pair
  names, matrix, counts = tables.metric_correlations(rows)
  assert names == ["b", "c", "d", "mig"]
  keep = [m for m in range(8) if m != 5]
  both = [m for m in keep if m != 2]
  expected_b_mig = stats.spearmanr(b[both], a[both]).statistic
  assert matrix[0, 3] == pytest.approx(expected_b_mig, abs=1e-12)
  assert matrix[3, 0] == matrix[0, 3]
  # c = -mig^3 is a decreasing function of mig: rank correlation -1.
  assert matrix[1, 3] == pytest.approx(-1.0)
  np.testing.assert_allclose(np.diag(matrix)[[0, 1, 3]], 1.0)
  # d is constant: undefined against everything.
  assert np.isnan(matrix[2]).all() and np.isnan(matrix[:, 2]).all()
  assert counts[0, 3] == 6 and counts[1, 3] == 7 and counts[3, 3] == 7
  # Complete rows: the whole matrix is scipy's matrix of the columns.
  complete = [r for m, r in enumerate(rows) if m in both]
  names, matrix, _ = tables.metric_correlations(complete)
  columns = np.array([[r["metrics"][n] for n in ("b", "c", "mig")]
                      for r in complete])
  np.testing.assert_allclose(matrix[np.ix_([0, 1, 3], [0, 1, 3])],
                             stats.spearmanr(columns).statistic, atol=1e-12)


# --------------------------------------------------------------------------
# A decoder that ignores a latent (deterministic, untrained).

IGNORED = 3


@pytest.fixture(scope="module")
def ignoring():
  """The tiny beta-VAE's 4 initial members, latent IGNORED cut from every
  decoder (its first layer's weights from it are 0); members 2 and 0."""
  exp = build(tiny_config())
  state = init_state(exp)
  params = state.params
  kernel = params["decoder"]["Dense_0"]["kernel"]  # [M, d, 256]
  params["decoder"]["Dense_0"]["kernel"] = kernel.at[:, IGNORED].set(0.0)
  functions = MemberFunctions(exp)
  members, _ = functions.at(state, 0, ids=[2, 0])
  views = visualize.member_views(members, jax.random.key(0), num_points=64)
  return exp, state, functions, members, views


def test_views_follow_the_ids_and_the_kl_is_the_posteriors(ignoring):
  exp, state, functions, members, views = ignoring
  every, _ = functions.at(state, 0)
  full = visualize.member_views(every, jax.random.key(0), num_points=64)
  np.testing.assert_allclose(views.kl, full.kl[[2, 0]], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(views.traversals, full.traversals[[2, 0]],
                             atol=1e-5)
  # KL(N(mean, exp(logvar)) || N(0, 1)) per latent, averaged over the draw.
  x = np.asarray(exp.dataset.observations_from_factors(views.factors))
  mean, logvar = (np.asarray(v, np.float64) for v in members.posterior_fn(x))
  expected = (0.5 * (mean ** 2 + np.exp(logvar) - logvar - 1)).mean(axis=1)
  np.testing.assert_allclose(views.kl, expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(views.means, mean, rtol=1e-5, atol=1e-6)


def test_traversal_of_an_ignored_latent_is_constant(ignoring):
  _, _, _, _, views = ignoring
  for images in views.traversals:  # [d, steps, H, W, 1]
    assert np.array_equal(images[IGNORED], np.repeat(images[IGNORED, :1],
                                                     STEPS, axis=0))
    for j in set(range(images.shape[0])) - {IGNORED}:
      assert np.abs(images[j, -1] - images[j, 0]).max() > 1e-3, j


def test_gif_has_a_frame_per_step_and_moves_where_latents_matter(
    ignoring, tmp_path):
  _, _, _, _, views = ignoring
  images, kl = views.traversals[0], views.kl[0]
  path = visualize.write_traversal_gif(images, kl, str(tmp_path / "t.gif"))
  with Image.open(path) as gif:
    frames = np.stack([np.asarray(f.convert("L"))
                       for f in ImageSequence.Iterator(gif)])
  assert len(frames) == STEPS
  # Cell geometry of `pictures.traversal_frames`: latents in KL order on a
  # grid_shape(d) grid, cells of H pixels with gaps of max(1, H // 16), all
  # enlarged by gif_scale(H).
  d, _, height = images.shape[:3]
  scale, gap = pictures.gif_scale(height), max(1, height // 16)
  rows, cols = pictures.grid_shape(d)
  strip = max(2, height // 8)
  assert frames.shape[1:] == (scale * (rows * (height + gap) + strip),
                              scale * (cols * (height + gap) - gap))
  order, _ = visualize.latent_order(kl)

  def cell(frame, position):
    top = (position // cols) * (height + gap) * scale
    left = (position % cols) * (height + gap) * scale
    return frame[top:top + height * scale, left:left + height * scale]

  for position, j in enumerate(order):
    cells = np.stack([cell(f, position) for f in frames])
    expected = np.round(np.clip(images[j, ..., 0].astype(np.float32), 0, 1)
                        * 255.0)
    np.testing.assert_array_equal(
        cells[:, ::scale, ::scale], expected.astype(np.uint8))
    if j == IGNORED:
      assert (cells == cells[:1]).all()
    else:
      assert (cells[-1] != cells[0]).any(), j
  # The strip under the grid marks the step: every frame differs from the
  # next even where no latent changes anything.
  assert all((frames[s] != frames[s + 1]).any() for s in range(STEPS - 1))


def test_traversal_png_rows_are_sorted_by_kl(ignoring, tmp_path):
  _, _, _, _, views = ignoring
  order, labels = visualize.latent_order(np.array([0.1, 2.0, 0.1, 0.5]))
  assert order.tolist() == [1, 3, 0, 2]
  assert labels == ["z1 KL 2.00", "z3 KL 0.50", "z0 KL 0.10", "z2 KL 0.10"]
  path = visualize.write_traversal_png(views.traversals[0], views.kl[0],
                                       str(tmp_path / "t.png"), "title")
  assert_not_blank(read_png(path), path)


# --------------------------------------------------------------------------
# A trained tiny model, and the command line.


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The tiny autoencoder (2 seeds, 16x16 dSprites) trained until it
  reconstructs (400 steps of 32 at lr 5e-3), evaluated with MIG and the
  active-latent count, traversals drawn by the job."""
  workdir = str(tmp_path_factory.mktemp("autoencoder"))
  config = autoencoder.get_config("tiny")
  config.train.num_steps = config.train.checkpoint_every = 400
  config.train.steps_per_chunk = 100
  config.train.batch_size = 32
  config.train.learning_rate = 5e-3
  config.eval.battery = {"active_latents": {"num_points": 200}}
  config.eval.traversals = True
  trainer.train(config, workdir)
  rows, _ = job.evaluate(workdir)
  return workdir, rows


def test_reconstructions_are_closer_to_their_own_inputs(trained):
  workdir, _ = trained
  run = open_checkpoint(workdir)
  members, _ = MemberFunctions(run.exp).at(run.restore(), run.step)
  views = visualize.member_views(members, jax.random.key(1), num_points=64)
  num = 16
  inputs, outputs = visualize.reconstructions(members, views, num)
  assert inputs.shape == (num, 16, 16, 1) and outputs.shape[:2] == (2, num)
  samples = visualize.prior_samples(members, jax.random.key(2), num,
                                    views.kl.shape[1], 2)
  for m in range(2):
    # distance[i, j]: reconstruction i against input j.
    distance = np.square(outputs[m][:, None] - inputs[None]).reshape(
        num, num, -1).sum(-1)
    own = np.diag(distance)
    others = distance[~np.eye(num, dtype=bool)].reshape(num, num - 1)
    assert own.mean() < 0.5 * others.mean(), (m, own.mean(), others.mean())
    assert (distance.argmin(axis=1) == np.arange(num)).mean() >= 0.5, m
    assert_not_blank(outputs[m], f"reconstructions of member {m}")
    assert_not_blank(samples[m], f"samples of member {m}")


def test_steps_and_ids_are_checked_against_the_checkpoint(trained):
  workdir, _ = trained
  with pytest.raises(ValueError, match=r"no checkpoint of step 7 in .*; it "
                     r"has steps \[400\]"):
    visualize.visualize(workdir, "0", step=7)
  with pytest.raises(ValueError, match=r"member id\(s\) \[5\] out of range; "
                     r"the run has 2 members, 0\.\.1"):
    visualize.visualize(workdir, "0,5")
  assert not os.path.exists(os.path.join(workdir, "pictures"))


def test_cli_draws_the_best_member_as_the_job_does(trained, tmp_path):
  workdir, rows = trained
  best = max(rows, key=lambda r: r["metrics"]["mig"])
  out = tmp_path / "pictures"
  result = run_module("disentax.visualize", f"--workdir={workdir}",
                      "--members=best", f"--out={out}", "--num=4")
  folder = out / f"member{best['member']:02d}_seed{best['seed']}"
  names = ("reconstructions.png", "samples.png", "traversals.png",
           "traversals.gif", "responses.png")
  assert sorted(os.listdir(folder)) == sorted(names)
  assert sorted(os.listdir(out)) == sorted([folder.name,
                                            "metric_correlations.png"])
  for name in names:
    assert str(folder / name) in result.stdout.splitlines()
  for path in [folder / n for n in names if n.endswith(".png")] + [
      out / "metric_correlations.png"]:
    assert_not_blank(read_png(path), path)
  rows_4, cols_4 = pictures.grid_shape(4)
  width, height = pictures.figure_inches(2 * rows_4, cols_4)
  with Image.open(folder / "reconstructions.png") as image:
    assert image.size == (round(width * 100), round(height * 100))
  with Image.open(folder / "traversals.gif") as gif:
    assert gif.n_frames == STEPS
  # The job drew the same member from the same draw (seed 0, the default
  # points), so its traversal grid is this one.
  drawn = os.path.join(workdir, "results", "traversals",
                       f"best_member{best['member']}_seed{best['seed']}.png")
  difference = np.abs(read_png(drawn).astype(int)
                      - read_png(folder / "traversals.png").astype(int))
  assert difference.mean() < 0.05
