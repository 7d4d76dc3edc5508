"""Downloading one upstream file: verified, resumable, with clear errors.

`retrieve` hands the file to `pooch.retrieve`, which skips a file already
present whose hash matches, downloads into a temporary file beside the
target, checks the hash and only then moves it into place (deleting it when
the hash does not match). Pooch's own HTTP downloader starts every download
from scratch, so pooch is given `ResumableDownloader`, a small downloader
on `requests` (as pooch's is): it streams into `<target>.part`, kept when
the transfer breaks, and the next run asks for the rest with an HTTP
`Range` request (starting over when the server does not honour it).

Every failure is one `FetchError` line saying what happened and what to do:
`UnreachableError` (connection refused, DNS, timeout, HTTP error),
`PartialDownloadError` (the transfer stopped; the part is kept and the next
run resumes it), `ChecksumError` (hash or size mismatch; the download is
removed, or kept aside as `<target>.corrupt` where pooch did not remove it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from typing import Any, Callable, Iterator

from disentax.data.fetch.sources import RemoteFile

_CHUNK = 1 << 20
_TIMEOUT = (30, 120)  # seconds to connect, and between two reads


class FetchError(Exception):
  """A download that did not yield a verified file (one line)."""


class UnreachableError(FetchError):
  """The server could not be reached or refused the file."""


class PartialDownloadError(FetchError):
  """The transfer stopped early; the part is kept for the next run."""


class ChecksumError(FetchError):
  """The file's hash or size is not the published one."""


def _algorithm(known_hash: str | None) -> str:
  return known_hash.split(":", 1)[0] if known_hash else "sha256"


def _hash_file(path: str, algorithms: tuple[str, ...]
               ) -> dict[str, "hashlib._Hash"]:
  hashers = {a: hashlib.new(a) for a in algorithms}
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      for hasher in hashers.values():
        hasher.update(block)
  return hashers


def file_digest(path: str, algorithm: str = "sha256") -> str:
  """`algorithm:hexdigest` of the file at `path`."""
  return f"{algorithm}:{_hash_file(path, (algorithm,))[algorithm].hexdigest()}"


def _progress_bar(enabled: bool, total: int | None, initial: int,
                  name: str) -> Any:
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm(total=total, initial=initial, unit="B", unit_scale=True,
              unit_divisor=1024, desc=name, file=sys.stderr,
              disable=not enabled, leave=True)


class ResumableDownloader:
  """A pooch downloader (`downloader(url, output_file, pooch)`) that resumes
  an earlier, broken transfer of the same file from `part` with an HTTP
  Range request, and hashes the bytes as they arrive (`digests`: the hash
  of the known hash's algorithm and SHA-256; a resumed part is read once
  first), so a mismatch can be reported without reading the file again."""

  def __init__(self, part: str, remote: RemoteFile, progress: bool,
               log: Callable[[str], None]):
    self.part = part
    self.remote = remote
    self.progress = progress
    self.log = log
    self.algorithms = tuple(dict.fromkeys((_algorithm(remote.known_hash),
                                           "sha256")))
    self.digests: dict[str, str] = {}
    self.called = False

  def __call__(self, url: str, output_file: Any, pooch: Any) -> None:
    import requests  # pylint: disable=import-outside-toplevel
    self.called = True
    have = os.path.getsize(self.part) if os.path.exists(self.part) else 0
    # The bytes as stored: a server's on-the-fly compression would change
    # both the length and, once decoded, the content.
    headers = {"Accept-Encoding": "identity"}
    if have:
      headers["Range"] = f"bytes={have}-"
    try:
      response = requests.get(url, headers=headers, stream=True,
                              timeout=_TIMEOUT)
    except requests.RequestException as error:
      raise UnreachableError(self._unreachable(url, error)) from None
    with response:
      if have and response.status_code == 416:  # nothing left to send
        total = _content_range_total(response.headers.get("Content-Range"))
        if total != have:
          os.remove(self.part)
          raise PartialDownloadError(
              f"{url} refused to resume {self.remote.filename} at byte "
              f"{have:,}; the part was removed, run again to download it "
              f"anew")
        hashers = _hash_file(self.part, self.algorithms)
      else:
        if response.status_code >= 400:
          raise UnreachableError(
              f"{url} answered HTTP {response.status_code} "
              f"({response.reason}); {self._manual_hint()}")
        if have and response.status_code == 206:
          self.log(f"resuming {self.remote.filename} at byte {have:,}")
        elif have:
          self.log(f"{url} cannot resume; downloading "
                   f"{self.remote.filename} from the start")
          have = 0
        hashers = self._stream(response, url, have)
    self._finish(url, output_file, hashers)

  def _stream(self, response: Any, url: str, have: int
              ) -> dict[str, "hashlib._Hash"]:
    """Appends the body to the part (from byte `have`), hashing the whole
    part, progress shown; returns the hashers."""
    import requests  # pylint: disable=import-outside-toplevel
    import urllib3  # pylint: disable=import-outside-toplevel
    length = response.headers.get("Content-Length")
    total = have + int(length) if length is not None else self.remote.size
    hashers = (_hash_file(self.part, self.algorithms) if have else
               {a: hashlib.new(a) for a in self.algorithms})
    written = have
    with open(self.part, "ab" if have else "wb") as f, _progress_bar(
        self.progress, total, have, self.remote.filename) as bar:
      try:
        for block in response.raw.stream(_CHUNK, decode_content=False):
          f.write(block)
          for hasher in hashers.values():
            hasher.update(block)
          written += len(block)
          bar.update(len(block))
      except (requests.RequestException, urllib3.exceptions.HTTPError,
              OSError) as error:
        raise PartialDownloadError(self._partial(url, written, total,
                                                 error)) from None
    if total is not None and written < total:
      raise PartialDownloadError(self._partial(url, written, total, None))
    return hashers

  def _finish(self, url: str, output_file: Any,
              hashers: dict[str, "hashlib._Hash"]) -> None:
    """Checks the size and moves the part onto pooch's file."""
    size = os.path.getsize(self.part)
    if self.remote.size is not None and size < self.remote.size:
      raise PartialDownloadError(self._partial(url, size, self.remote.size,
                                               None))
    self.digests = {a: f"{a}:{h.hexdigest()}" for a, h in hashers.items()}
    os.replace(self.part, output_file)

  def _partial(self, url: str, written: int, total: int | None,
               error: Exception | None) -> str:
    of = f" of {total:,}" if total is not None else ""
    why = f" ({type(error).__name__})" if error is not None else ""
    return (f"the download of {url} stopped after {written:,}{of} bytes"
            f"{why}; the part is kept at {self.part} and the next run "
            f"resumes it")

  def _manual_hint(self) -> str:
    target = self.part.removesuffix(".part")
    return f"check the network, or download it by hand to {target}"

  def _unreachable(self, url: str, error: Exception) -> str:
    return (f"could not reach {url} ({type(error).__name__}); "
            f"{self._manual_hint()}")


def _content_range_total(header: str | None) -> int | None:
  """N of a `Content-Range: bytes */N` header, else None."""
  if header and "/" in header:
    total = header.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None
  return None


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
  """Pooch logs each download at INFO; `retrieve` says what happened."""
  import pooch  # pylint: disable=import-outside-toplevel
  logger = pooch.get_logger()
  level = logger.level
  logger.setLevel(logging.WARNING)
  try:
    yield
  finally:
    logger.setLevel(level)


def _set_aside(path: str) -> str:
  aside = path + ".corrupt"
  os.replace(path, aside)
  return aside


def _check_unhashed_size(remote: RemoteFile, target: str) -> None:
  """Without a published hash only the size can be checked; a file of the
  wrong size is kept aside."""
  size = os.path.getsize(target)
  if remote.size is not None and size != remote.size:
    aside = _set_aside(target)
    raise ChecksumError(
        f"{remote.filename} has {size:,} bytes but {remote.size:,} were "
        f"expected; kept aside as {aside}, run again to download it anew")


def retrieve(remote: RemoteFile, folder: str, *, progress: bool = True,
             log: Callable[[str], None] = print) -> str:
  """The verified file `remote` in `folder`: kept when already present and
  matching, else downloaded (resuming a broken transfer) from the first of
  its URLs that serves matching bytes. Returns its path.

  Raises:
    FetchError: one line saying what failed and what to do (module
      docstring).
  """
  import pooch  # pylint: disable=import-outside-toplevel
  target = os.path.join(folder, remote.filename)
  if (remote.known_hash is None and os.path.exists(target)
      and remote.size is not None and os.path.getsize(target) != remote.size):
    log(f"{target} has the wrong size; downloading it again")
    _set_aside(target)
  existed = os.path.exists(target)
  failures: list[FetchError] = []
  for url in remote.urls:
    downloader = ResumableDownloader(target + ".part", remote, progress, log)
    try:
      with _quiet_pooch():
        pooch.retrieve(url, remote.known_hash, fname=remote.filename,
                       path=folder, downloader=downloader)
    except UnreachableError as error:
      failures.append(error)
      continue
    except ValueError:  # pooch: the hash does not match; it removed the file
      failures.append(_mismatch(remote, url, downloader))
      continue
    if downloader.called:
      log(f"downloaded {target} from {url}")
    elif existed:
      log(f"{target} is already here")
    if remote.known_hash is None:
      _check_unhashed_size(remote, target)
      digest = downloader.digests.get("sha256") or file_digest(target)
      log(f"{remote.filename}: NOT verified (no published hash; size "
          f"{'checked' if remote.size else 'unknown'}); its {digest}")
    else:
      log(f"{remote.filename}: verified ({remote.known_hash})")
    return target
  if len(failures) == 1:
    raise failures[0]
  kind = (ChecksumError if all(isinstance(f, ChecksumError) for f in failures)
          else UnreachableError)
  raise kind(f"could not fetch {remote.filename} from any of its "
             f"{len(failures)} URLs: " + " | ".join(map(str, failures)))


def _mismatch(remote: RemoteFile, url: str,
              downloader: ResumableDownloader) -> ChecksumError:
  got = downloader.digests.get(_algorithm(remote.known_hash), "unknown")
  return ChecksumError(
      f"checksum mismatch for {remote.filename} from {url}: expected "
      f"{remote.known_hash}, got {got}; the download was removed")
