"""`python -m disentax.data.fetch`: download, verify, resume, prepare.

A threaded HTTP server on 127.0.0.1 serves small files the tests write (a
dSprites npz, a Shapes3D h5, a Cars3D tar.gz of .mat meshes, the six
SmallNORB .mat.gz files); the source table is pointed at it, with hashes of
the same algorithm as the real entries. Nothing touches the internet.
Prepared files are read back through the registered loaders.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import gzip
import hashlib
import io
import itertools
import os
import re
import shlex
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from disentax.data import DATASETS, fetch, make_dataset
from disentax.data.fetch import download, prepare
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
  """The data and cache folders inside the test's tmp_path."""
  monkeypatch.setenv("DISENTAX_DATA", str(tmp_path / "data"))
  monkeypatch.setenv("DISENTAX_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------- the server

class Server:
  """What the local server serves and what it was asked."""

  def __init__(self):
    self.files: dict[str, bytes] = {}
    self.hits = collections.Counter()
    self.ranges: list[str | None] = []
    self.cut: dict[str, int] = {}   # name -> bytes sent before hanging up
    self.resumable = True
    self.port = 0

  def url(self, name: str) -> str:
    return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def server():
  state = Server()

  class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's name)
      name = self.path.lstrip("/")
      state.hits[name] += 1
      state.ranges.append(self.headers.get("Range"))
      if name not in state.files:
        self.send_error(404)
        return
      data = state.files[name]
      start = 0
      wanted = self.headers.get("Range")
      if wanted and state.resumable:
        start = int(wanted.removeprefix("bytes=").split("-")[0])
        if start >= len(data):
          self.send_response(416)
          self.send_header("Content-Range", f"bytes */{len(data)}")
          self.send_header("Content-Length", "0")
          self.end_headers()
          return
        self.send_response(206)
        self.send_header("Content-Range",
                         f"bytes {start}-{len(data) - 1}/{len(data)}")
      else:
        self.send_response(200)
      body = data[start:]
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Connection", "close")
      self.end_headers()
      cut = state.cut.pop(name, None)
      self.wfile.write(body if cut is None else body[:cut])
      self.close_connection = True

    def log_message(self, *args):
      pass

  httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  state.port = httpd.server_address[1]
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield state
  httpd.shutdown()
  httpd.server_close()


def digest(data: bytes, algorithm: str) -> str:
  return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def serve(server, monkeypatch, name, contents, hashed=True):
  """Points source `name` at the server, which serves `contents`
  (filename -> bytes), with hashes of the real entries' algorithms."""
  source = fetch.SOURCES[name]
  files = []
  for f in source.files:
    algorithm = f.known_hash.split(":")[0]
    data = contents[f.filename]
    server.files[f.filename] = data
    files.append(dataclasses.replace(
        f, urls=(server.url(f.filename),),
        known_hash=digest(data, algorithm) if hashed else None,
        size=len(data)))
  monkeypatch.setitem(fetch.SOURCES, name,
                      dataclasses.replace(source, files=tuple(files)))
  return fetch.SOURCES[name]


def run(name, lines=None, **kwargs):
  """fetch() without progress bars, its log lines collected."""
  log = (lines if lines is not None else []).append
  return fetch.fetch(name, progress=False, log=log, **kwargs)


def observations(dataset, factors):
  return np.asarray(jax.jit(dataset.observations_from_factors)(
      jnp.asarray(factors, jnp.int32)))


def full_grid(sizes):
  return np.array(list(itertools.product(*map(range, sizes))), np.int64)


# ------------------------------------------------------- fixture files

def dsprites_npz(sizes=(2, 1, 1, 2, 2)):
  """A dSprites npz of 16x16 images (each grid tuple its own image)."""
  latents = full_grid(sizes)
  rng = np.random.default_rng(0)
  images = (rng.random((len(latents), 16, 16)) < 0.5).astype(np.uint8)
  buffer = io.BytesIO()
  np.savez(buffer, imgs=images, latents_classes=np.concatenate(
      [np.zeros((len(latents), 1), np.int64), latents], axis=1))
  return buffer.getvalue(), latents, images


def shapes3d_h5(sizes=(2, 1, 1, 1, 2, 1)):
  h5py = pytest.importorskip("h5py")
  labels = full_grid(sizes).astype(np.float64) / 10.0   # factor values
  images = np.random.default_rng(1).integers(
      0, 256, (len(labels), 16, 16, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  with h5py.File(buffer, "w") as f:
    f["images"], f["labels"] = images, labels
  return buffer.getvalue(), images


def car_value(elevation, azimuth, car):
  return elevation * 24 + azimuth + 96 * car


def cars3d_archive(num_cars=2):
  """The Deep Visual Analogy archive's layout, `num_cars` meshes whose
  128x128 views are constant per (elevation, azimuth, car) plus a step
  between the image's top and bottom halves and a step per channel."""
  from scipy import io as sio
  rows = (np.arange(128) >= 64)[:, None, None] * 30
  channels = np.arange(3)[None, None, :] * 10
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    def add(name, data):
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    add("data/shapes48.mat", b"not a car")
    for car in reversed(range(num_cars)):   # sorted by name, not by order
      im = np.empty((128, 128, 3, 24, 4), np.uint8)
      for el, az in itertools.product(range(4), range(24)):
        im[:, :, :, az, el] = car_value(el, az, car) + rows + channels
      mat = io.BytesIO()
      sio.savemat(mat, {"im": im})
      add(f"data/cars/car_{car + 1:03d}_mesh.mat", mat.getvalue())
    add("data/cars/list.txt", b"car_001_mesh\ncar_002_mesh\n")
  return buffer.getvalue()


def norb_matrix(array):
  """The NORB binary matrix format, gzipped."""
  codes = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}
  dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
  header = np.array([codes[array.dtype], array.ndim, *dims], "<i4")
  return gzip.compress(header.tobytes() + array.astype(
      array.dtype.newbyteorder("<")).tobytes())


NORB_SIZES = (2, 2, 2, 2)   # category, elevation, azimuth, lighting
NORB_INSTANCES = {"training": 4, "testing": 0}


def norb_value(half, category, elevation, azimuth, lighting):
  return (8 * category + 4 * elevation + 2 * azimuth + lighting
          + (100 if half == "training" else 0))


def smallnorb_files():
  """The six files of a SmallNORB with every factor 2 values and one
  instance per half; left images constant, right ones their negative."""
  contents = {}
  for f in fetch.SOURCES["smallnorb"].files:
    half = "training" if "-training-" in f.filename else "testing"
    grid = full_grid(NORB_SIZES)[::-1]           # any row order
    part = f.filename.split("-")[-1].removesuffix(".mat.gz")
    if part == "dat":
      left = np.array([norb_value(half, *t) for t in grid], np.uint8)
      pairs = np.stack([np.broadcast_to(left[:, None, None], (16, 96, 96)),
                        np.broadcast_to(255 - left[:, None, None],
                                        (16, 96, 96))], axis=1)
      contents[f.filename] = norb_matrix(np.ascontiguousarray(pairs))
    elif part == "cat":
      contents[f.filename] = norb_matrix(grid[:, 0].astype(np.int32))
    else:
      info = np.stack([np.full(len(grid), NORB_INSTANCES[half]), grid[:, 1],
                       2 * grid[:, 2], grid[:, 3]], axis=1)
      contents[f.filename] = norb_matrix(info.astype(np.int32))
  return contents


# ---------------------------------------------- download, verify, prepare

def test_dsprites_downloads_verifies_and_loads(server, monkeypatch, tmp_path):
  data, latents, images = dsprites_npz()
  serve(server, monkeypatch, "dsprites",
        {fetch.SOURCES["dsprites"].files[0].filename: data})
  lines = []
  path = run("dsprites", lines)
  assert path == str(tmp_path / "data" / "dsprites" /
                     "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
  assert open(path, "rb").read() == data
  assert f"{os.path.basename(path)}: verified (md5:" \
         f"{hashlib.md5(data).hexdigest()})" in lines
  assert not os.path.exists(path + ".part")
  dataset = make_dataset(fetch.SOURCES["dsprites"].dataset_section(path)
                         | {"image_size": 16})
  assert dataset.factor_sizes == (2, 1, 1, 2, 2)
  np.testing.assert_array_equal(observations(dataset, latents)[..., 0],
                                images)


def test_shapes3d_h5_loads_through_its_loader(server, monkeypatch):
  data, images = shapes3d_h5()
  serve(server, monkeypatch, "shapes3d", {"3dshapes.h5": data})
  path = run("shapes3d")
  dataset = make_dataset({**fetch.SOURCES["shapes3d"].dataset_section(path),
                          "image_size": 16,
                          "factor_sizes": (2, 1, 1, 1, 2, 1)})
  got = observations(dataset, full_grid((2, 1, 1, 1, 2, 1)))
  np.testing.assert_allclose(got, images / 255.0, atol=1e-6)


def test_cars3d_is_prepared_in_grid_order(server, monkeypatch):
  serve(server, monkeypatch, "cars3d",
        {"nips2015-analogy-data.tar.gz": cars3d_archive()})
  lines = []
  path = run("cars3d", lines)
  assert os.path.basename(path) == "cars3d.npz"
  assert lines[-1] == f"preparing {path}"
  with np.load(path) as prepared:
    assert prepared["images"].shape == (4 * 24 * 2, 64, 64, 3)
  dataset = make_dataset({**fetch.SOURCES["cars3d"].dataset_section(path),
                          "factor_sizes": (4, 24, 2)})
  grid = full_grid((4, 24, 2))
  got = np.rint(observations(dataset, grid) * 255).astype(int)
  # 128 -> 64 averages 2x2 blocks: the half step lands on row 32.
  step = np.broadcast_to((np.arange(64) >= 32)[:, None, None] * 30
                         + np.arange(3) * 10, (64, 64, 3))
  for (el, az, car), image in zip(grid, got):
    np.testing.assert_array_equal(image, car_value(el, az, car) + step)


def test_smallnorb_is_prepared_with_the_instance_as_noise(server,
                                                          monkeypatch):
  serve(server, monkeypatch, "smallnorb", smallnorb_files())
  path = run("smallnorb")
  with np.load(path) as prepared:
    assert prepared["images"].shape == (32, 96, 96)
    assert sorted(set(prepared["instance"])) == [0, 4]
    assert sorted(set(prepared["labels"][:, 2])) == [0, 1]   # azimuth / 2
  dataset = make_dataset({**fetch.SOURCES["smallnorb"].dataset_section(path),
                          "image_size": 32, "factor_sizes": NORB_SIZES})
  grid = full_grid(NORB_SIZES)
  got = np.rint(observations(dataset, grid) * 255).astype(int)
  halves = []
  for factors, image in zip(grid, got):
    assert np.all(image == image.flat[0])            # the left image
    half = [h for h in NORB_INSTANCES
            if norb_value(h, *factors) == image.flat[0]]
    assert len(half) == 1, (factors, image.flat[0])
    halves.append(half[0])
  assert set(halves) == {"training", "testing"}      # both instances used


def test_rerun_downloads_nothing(server, monkeypatch):
  data = dsprites_npz()[0]
  name = fetch.SOURCES["dsprites"].files[0].filename
  serve(server, monkeypatch, "dsprites", {name: data})
  run("dsprites")
  lines = []
  path = run("dsprites", lines)
  assert server.hits[name] == 1
  assert lines[0] == f"{path} is already here"
  serve(server, monkeypatch, "cars3d",
        {"nips2015-analogy-data.tar.gz": cars3d_archive(1)})
  prepared = run("cars3d")
  lines = []
  assert run("cars3d", lines) == prepared
  assert server.hits["nips2015-analogy-data.tar.gz"] == 1
  assert lines == [f"{prepared} is already prepared"]


# ----------------------------------------------------------------- errors

def test_unknown_name_lists_the_datasets():
  with pytest.raises(ValueError, match=r"unknown dataset 'dsprite' to fetch; "
                     r"allowed: dsprites, shapes3d, mpi3d_toy, "
                     r"mpi3d_realistic, mpi3d_real, cars3d, smallnorb$"):
    fetch.fetch("dsprite")


def test_wrong_checksum_is_an_error_and_nothing_is_kept(server, monkeypatch):
  data = dsprites_npz()[0]
  source = serve(server, monkeypatch, "dsprites",
                 {fetch.SOURCES["dsprites"].files[0].filename: data})
  remote = source.files[0]
  server.files[remote.filename] = data[:-1] + b"x"   # a changed last byte
  target = os.path.join(os.environ["DISENTAX_DATA"], "dsprites",
                        remote.filename)
  with pytest.raises(fetch.ChecksumError) as error:
    run("dsprites")
  assert str(error.value) == (
      f"checksum mismatch for {remote.filename} from {remote.urls[0]}: "
      f"expected {remote.known_hash}, got "
      f"{digest(data[:-1] + b'x', 'md5')}; the download was removed")
  assert os.listdir(os.path.dirname(target)) == []


def test_broken_transfer_is_resumed_with_a_range_request(server,
                                                         monkeypatch):
  data = dsprites_npz()[0]
  name = fetch.SOURCES["dsprites"].files[0].filename
  serve(server, monkeypatch, "dsprites", {name: data})
  server.cut[name] = 1000
  target = os.path.join(os.environ["DISENTAX_DATA"], "dsprites", name)
  with pytest.raises(fetch.PartialDownloadError,
                     match=rf"stopped after 1,000 of {len(data):,} bytes .*"
                     rf"kept at {re.escape(target)}\.part and the next run "
                     rf"resumes it"):
    run("dsprites")
  assert os.path.getsize(target + ".part") == 1000
  assert not os.path.exists(target)
  lines = []
  assert run("dsprites", lines) == target
  assert server.ranges == [None, "bytes=1000-"]
  assert "resuming " + name + " at byte 1,000" in lines
  assert open(target, "rb").read() == data
  assert not os.path.exists(target + ".part")


def test_server_without_ranges_starts_over(server, monkeypatch):
  data = dsprites_npz()[0]
  name = fetch.SOURCES["dsprites"].files[0].filename
  serve(server, monkeypatch, "dsprites", {name: data})
  server.cut[name], server.resumable = 500, False
  with pytest.raises(fetch.PartialDownloadError):
    run("dsprites")
  lines = []
  target = run("dsprites", lines)
  assert any(line.endswith(f"cannot resume; downloading {name} from the "
                           f"start") for line in lines)
  assert open(target, "rb").read() == data


def test_truncated_file_on_disk_is_downloaded_again(server, monkeypatch):
  data = dsprites_npz()[0]
  name = fetch.SOURCES["dsprites"].files[0].filename
  serve(server, monkeypatch, "dsprites", {name: data})
  target = os.path.join(os.environ["DISENTAX_DATA"], "dsprites", name)
  os.makedirs(os.path.dirname(target))
  with open(target, "wb") as f:
    f.write(data[:len(data) // 2])
  run("dsprites")
  assert server.hits[name] == 1
  assert open(target, "rb").read() == data


def test_unhashed_file_reports_its_sha256_and_checks_its_size(server,
                                                              monkeypatch):
  data = dsprites_npz()[0]
  name = fetch.SOURCES["dsprites"].files[0].filename
  serve(server, monkeypatch, "dsprites", {name: data}, hashed=False)
  server.cut[name] = 700   # the digest spans the resumed part too
  with pytest.raises(fetch.PartialDownloadError):
    run("dsprites")
  lines = []
  target = run("dsprites", lines)
  assert lines[-1] == (f"{name}: NOT verified (no published hash; size "
                       f"checked); its {digest(data, 'sha256')}")
  with open(target, "wb") as f:   # a truncated copy: the size tells
    f.write(data[:100])
  run("dsprites")
  assert server.hits[name] == 3 and open(target, "rb").read() == data
  assert open(target + ".corrupt", "rb").read() == data[:100]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_no_network_says_what_to_do(monkeypatch):
  source = fetch.SOURCES["dsprites"]
  url = f"http://127.0.0.1:{free_port()}/dsprites.npz"
  monkeypatch.setitem(fetch.SOURCES, "dsprites", dataclasses.replace(
      source, files=(dataclasses.replace(source.files[0], urls=(url,)),)))
  target = os.path.join(os.environ["DISENTAX_DATA"], "dsprites",
                        source.files[0].filename)
  with pytest.raises(fetch.UnreachableError) as error:
    run("dsprites")
  assert str(error.value) == (
      f"could not reach {url} (ConnectionError); check the network, or "
      f"download it by hand to {target}")


def test_dead_link_falls_back_to_the_mirror(server, monkeypatch):
  data = dsprites_npz()[0]
  name = fetch.SOURCES["dsprites"].files[0].filename
  source = serve(server, monkeypatch, "dsprites", {name: data})
  dead = server.url("gone/" + name)
  monkeypatch.setitem(fetch.SOURCES, "dsprites", dataclasses.replace(
      source, files=(dataclasses.replace(
          source.files[0], urls=(dead, server.url(name))),)))
  lines = []
  target = run("dsprites", lines)
  assert server.hits["gone/" + name] == 1 and server.hits[name] == 1
  assert f"downloaded {target} from {server.url(name)}" in lines
  del server.files[name]
  os.remove(target)
  with pytest.raises(fetch.UnreachableError, match=(
      rf"could not fetch {name} from any of its 2 URLs: {re.escape(dead)} "
      rf"answered HTTP 404 .* \| {re.escape(server.url(name))} answered HTTP "
      rf"404")):
    run("dsprites")


# ------------------------------------------------ the table and the CLI

def test_sources_are_well_formed():
  hashes = re.compile(r"sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}")
  assert list(fetch.SOURCES) == ["dsprites", "shapes3d", "mpi3d_toy",
                                 "mpi3d_realistic", "mpi3d_real", "cars3d",
                                 "smallnorb"]
  for name, source in fetch.SOURCES.items():
    assert source.name == name and source.files
    assert source.path_key in DATASETS.allowed_keys(source.loader)
    assert (source.prepare is None) == (source.prepared is None)
    for remote in source.files:
      assert remote.known_hash is None or hashes.fullmatch(remote.known_hash)
      assert remote.size is None or remote.size > 0
      for url in remote.urls:
        # Plain http only where a published hash checks the bytes.
        assert url.startswith("https://") or (
            url.startswith("http://") and remote.known_hash), url
        assert url.endswith("/" + remote.filename)
  norb = fetch.SOURCES["smallnorb"].files
  assert sum(f.size for f in norb) == 262_778_180  # TFDS checksums.tsv


def test_printed_override_sets_the_dataset_section():
  assert fetch.config_override("shapes3d", "/d/3dshapes.h5") == (
      """'--config.dataset={"name": "shapes3d_h5", "path": "/d/3dshapes.h5"}'""")
  path = "/data/it's here/3dshapes.h5"
  override = fetch.config_override("shapes3d", path)
  argv = ["main", *shlex.split(override)]
  values = flags.FlagValues()   # as disentax.main defines its --config
  config_flags.DEFINE_config_file(
      "config", os.path.join(REPO, "experiments", "beta_vae.py") + ":tiny",
      flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  assert values.config.dataset.to_dict() == {"name": "shapes3d_h5",
                                             "path": path}
  assert ast.literal_eval(shlex.split(override)[0].split("=", 1)[1]) == {
      "name": "shapes3d_h5", "path": path}


def test_norb_reader_refuses_a_truncated_file(tmp_path):
  data = norb_matrix(np.zeros((3, 4), np.int32))
  path = tmp_path / "x-info.mat.gz"
  path.write_bytes(gzip.compress(gzip.decompress(data)[:-4]))
  with pytest.raises(ValueError, match="x-info.mat.gz is truncated"):
    prepare.read_norb_matrix(str(path))
  path.write_bytes(data)
  np.testing.assert_array_equal(prepare.read_norb_matrix(str(path)),
                                np.zeros((3, 4)))
  assert download.file_digest(str(path)) == digest(data, "sha256")
