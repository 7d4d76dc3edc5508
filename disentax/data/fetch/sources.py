"""Where the real datasets come from: upstream URLs, published hashes and
sizes, and what the loaders read once they are downloaded.

Every fact here has a source, named in a comment beside it. A hash is in
pooch's form, "sha256:<64 hex>" or "md5:<32 hex>": SHA-256 where one is
published (TensorFlow Datasets' checksum files), else the MD5 that the
upstream-facing loaders publish (disent's dataset classes, torchvision-style
loaders); `None` where no source publishes one, and then `fetch` prints the
SHA-256 it computed and says the file was not verified. A size of `None`
means no source states it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

from disentax.data.fetch import prepare


@dataclasses.dataclass(frozen=True)
class RemoteFile:
  """One upstream file: its name on disk, the URLs serving it (tried in
  order: the first is the one the hash was published for, the others
  mirrors of the same bytes), its hash and its size in bytes."""
  filename: str
  urls: tuple[str, ...]
  known_hash: str | None
  size: int | None


@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset `fetch` can download: its files, the preparation that turns
  them into what a registered loader reads (None: the loader reads the
  first file as it is), and that loader's config section."""
  name: str
  description: str
  files: tuple[RemoteFile, ...]
  loader: str                     # a name registered in `DATASETS`
  path_key: str                   # the loader's option naming the file
  prepared: str | None = None     # the prepared file's name
  prepare: Callable[[Mapping[str, str], str], None] | None = None

  def output_name(self) -> str:
    """The file the loader reads, inside the source's folder."""
    return self.prepared or self.files[0].filename

  def dataset_section(self, path: str) -> dict[str, Any]:
    """The config section (`config.dataset`) that loads `path`."""
    return {"name": self.loader, self.path_key: os.path.abspath(path)}


def _mpi3d(variant: str, md5: str, size: int | None) -> Source:
  filename = f"mpi3d_{variant}.npz"
  return Source(
      name=f"mpi3d_{variant}",
      description=f"MPI3D-{variant} (Gondal et al. 2019): 1,036,800 RGB "
                  f"64x64 images, factors 6x6x2x3x3x40x40, one uncompressed "
                  f"npz",
      files=(RemoteFile(
          filename,
          # The URL whose MD5 disent publishes (its Mpi3dData), then the
          # link the dataset's maintainers give now
          # (github.com/rr-learning/disentanglement_dataset README).
          (f"https://storage.googleapis.com/disentanglement_dataset/"
           f"Final_Dataset/{filename}",
           f"https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/"
           f"main/{filename}"),
          f"md5:{md5}", size),),
      loader="mpi3d_npz", path_key="path")


_NORB = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_TRAIN = "smallnorb-5x46789x9x18x6x2x96x96-training"
_NORB_TEST = "smallnorb-5x01235x9x18x6x2x96x96-testing"


def _norb(chunk: str, part: str, sha256: str, size: int) -> RemoteFile:
  filename = f"{chunk}-{part}.mat.gz"
  return RemoteFile(filename, (_NORB + filename,), f"sha256:{sha256}", size)


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(
        name="dsprites",
        description="dSprites (Matthey et al. 2017): DeepMind's npz, "
                    "737,280 binary 64x64 images with their latents",
        files=(RemoteFile(
            "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
            ("https://github.com/google-deepmind/dsprites-dataset/raw/master/"
             "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",),
            # No SHA-256 is published for the npz (TFDS checks the hdf5
            # copy); this MD5 is the one several loaders publish for it.
            "md5:7da33b31b13a06f4b04a70402ce90c2e",
            None),),  # no source states its size
        loader="dsprites", path_key="npz_path"),
    Source(
        name="shapes3d",
        description="3D Shapes (Burgess & Kim 2018): DeepMind's 3dshapes.h5, "
                    "480,000 RGB 64x64 images with their factor values",
        files=(RemoteFile(
            "3dshapes.h5", ("https://storage.googleapis.com/3d-shapes/"
                            "3dshapes.h5",),
            # TensorFlow Datasets, datasets/shapes3d/checksums.tsv.
            "sha256:0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5"
            "769be1785", 267_573_662),),
        loader="shapes3d_h5", path_key="path"),
    # MD5s: disent's Mpi3dData ("full" hash = MD5 of the whole file).
    _mpi3d("toy", "55889cb7c7dfc655d6e0277beee88868", None),
    # 12,740,198,762 bytes: a third party's measurement of the realistic
    # npz (a 12,740,198,528-byte images.npy = 1,036,800 x 64 x 64 x 3 plus
    # its 128-byte header, stored uncompressed in a zip).
    _mpi3d("realistic", "59a6225b88b635365f70c91b3e52f70f", 12_740_198_762),
    _mpi3d("real", "0f33f609918fb5c97996692f91129802", None),
    Source(
        name="cars3d",
        description="Cars3D (Reed et al. 2015): the Deep Visual Analogy "
                    "archive's 183 car meshes, 4 elevations x 24 azimuths "
                    "of 128x128 renders, prepared as 17,568 64x64 images in "
                    "the grid order cars3d_npz reads",
        files=(RemoteFile(
            "nips2015-analogy-data.tar.gz",
            # The only published location (disentanglement_lib's download
            # script, disent): plain http; the MD5 (disent's Cars3dData)
            # checks the bytes.
            ("http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",),
            "md5:4e866a7919c1beedf53964e6f7a23686",
            None),),  # no source states its size
        loader="cars3d_npz", path_key="path",
        prepared="cars3d.npz", prepare=prepare.prepare_cars3d),
    Source(
        name="smallnorb",
        description="SmallNORB (LeCun et al. 2004): NYU's training and test "
                    "halves, prepared as one npz of 48,600 left-camera 96x96 "
                    "images with the instance as noise, as "
                    "disentanglement_lib merges them",
        # Sizes and SHA-256: TensorFlow Datasets,
        # datasets/smallnorb/checksums.tsv.
        files=(
            _norb(_NORB_TRAIN, "dat", "5ffd6272a07d32695ee1082a26a41a93a37aab"
                  "8c28da047f8c34ed348d214873", 131_896_188),
            _norb(_NORB_TRAIN, "cat", "2784e542c1922060691090952b6cd6278879a2"
                  "16c90f81476f0f00256d42cdaa", 348),
            _norb(_NORB_TRAIN, "info", "de7eb932ebe7a4ee16217fead60660d0eb3d2"
                  "3632c2f4d1c51f88c501c17bf32", 71_052),
            _norb(_NORB_TEST, "dat", "cf7104eed3e51174d2f65b66d1e5878b9da233b"
                  "886f161b0d88f4510ba2c7474", 130_799_817),
            _norb(_NORB_TEST, "cat", "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e0"
                  "16e374836fc097f2e5ff509ff", 347),
            _norb(_NORB_TEST, "info", "16adf314226327ee006d1a44db8cfef52773c0"
                  "6c829951d5653a9f6f310248a2", 10_428),
        ),
        loader="smallnorb_npz", path_key="path",
        prepared="smallnorb.npz", prepare=prepare.prepare_smallnorb),
)}
