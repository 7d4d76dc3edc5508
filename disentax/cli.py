"""How every entry point ends: one line naming what is wrong, and an exit
status that says whose the problem is.

  python -m disentax.X --bad=value   ->  error: <what is wrong>   exit 2
  a failure while running            ->  error: <what failed>     exit 1
  either, with --verbose             ->  the traceback, then the line

Exit 2 (`USAGE_EXIT`) is a usage error: the command line or the config it
names is wrong, and rerunning it unchanged fails the same way (absl's flag
parsing errors and `app.UsageError`, and `UsageError` below, which library
code raises for a bad value it was given).  Exit 1 (`FAILURE_EXIT`) is any
other failure (a missing or corrupt file, a workdir in use, a full disk).
An entry point adopts it in one line, instead of `app.run(main)`:

  if __name__ == "__main__":
    cli.run(main)

Statuses a `main` returns or exits with itself (143 for a preempted run,
see `disentax.preemption`) pass through unchanged.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable, NoReturn, Sequence

from disentax.preemption import INTERRUPTED_EXIT

USAGE_EXIT = 2
FAILURE_EXIT = 1
# An error message longer than this is cut (a TensorStore error spells out
# its whole spec); --verbose shows it all.
MAX_MESSAGE = 500


class UsageError(ValueError):
  """A bad value given to disentax (a flag, a config key, an argument),
  named with what is allowed: an entry point exits with `USAGE_EXIT`."""


def one_line(error: BaseException) -> str:
  """`error` as one line: its message (its first line, and the last of a
  traceback it quotes, cut at MAX_MESSAGE), with its type named unless it
  is a usage error or a kind disentax raises with a full message (its own
  exceptions, ValueError, OSError)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  message = lines[0] if lines else ""
  if "Traceback (most recent call last):" in lines[1:]:
    message += f" {lines[-1]}"  # one that quotes a traceback: its error
  if len(message) > MAX_MESSAGE:
    message = message[:MAX_MESSAGE] + " ..."
  expected = (isinstance(error, (ValueError, OSError))
              or type(error).__module__.startswith("disentax.")
              or exit_status(error) == USAGE_EXIT)
  if not expected or not message:
    message = f"{type(error).__name__}: {message}".rstrip(": ")
    message += " (--verbose shows the traceback)"
  return message


def exit_status(error: BaseException) -> int:
  """The status a process ending with `error` exits with."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  if isinstance(error, (UsageError, app.UsageError, flags.Error)):
    return USAGE_EXIT
  if isinstance(error, KeyboardInterrupt):
    return INTERRUPTED_EXIT
  return FAILURE_EXIT


def report(error: BaseException, verbose: bool) -> int:
  """Prints `error` (its traceback first with `verbose`) on stderr as
  `error: ...`; returns the exit status."""
  sys.stdout.flush()
  if verbose:
    traceback.print_exception(type(error), error, error.__traceback__)
  print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
  return exit_status(error)


def _verbose(argv: Sequence[str]) -> bool:
  """Whether --verbose was given (read from argv when parsing failed)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if flags.FLAGS.is_parsed():
    return flags.FLAGS.verbose
  return any(arg in ("--verbose", "-verbose") for arg in argv)


def run(main: Callable[[list[str]], int | None],
        argv: Sequence[str] | None = None) -> NoReturn:
  """`absl.app.run(main)`, with every error ending the process as one line
  (`report`) and the --verbose flag to show its traceback."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, "on an error, print its traceback "
                      "before the one-line message")

  def parse(args: list[str]) -> list[str]:
    try:
      return flags.FLAGS(args)
    except flags.Error as error:
      sys.exit(report(error, _verbose(args)))

  def guarded(args: list[str]) -> int | None:
    try:
      return main(args)
    except SystemExit:
      raise
    except BaseException as error:  # pylint: disable=broad-except
      sys.exit(report(error, _verbose(args)))

  app.run(guarded, argv=argv, flags_parser=parse)
