"""Command line: argument parsing only; every command calls the library.

Errors a user can cause print one line (``snnergy: error: ...``) and exit with code 2; SIGINT,
SIGTERM and SIGHUP stop a command cleanly (exit code 128 + the signal) and the same command resumes.
:mod:`snnergy.cli.parser` builds the parser, :mod:`snnergy.cli.commands` runs each command.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from snnergy.errors import SnnergyError

from snnergy.cli.commands import COMMANDS, check_out, compare_grid
from snnergy.cli.parser import build_parser, parse_overrides, resolve_config

__all__ = ["COMMANDS", "Interrupted", "build_parser", "compare_grid", "main", "parse_overrides", "resolve_config"]


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) turned into the same clean stop as Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _stop_cleanly_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread, so every command unwinds
    as on Ctrl-C: checkpoints and results are written atomically after each finished epoch or
    configuration, worker processes are stopped, and the same command resumes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``snnergy`` and ``python -m snnergy``; returns the exit code (2 for a user
    error, 128 + the signal number when interrupted by SIGINT, SIGTERM or SIGHUP)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        with _stop_cleanly_on_signals():
            check_out(args)
            return COMMANDS[args.command](args, extra)
    except SnnergyError as err:
        print(f"snnergy: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        print(f"snnergy: interrupted ({signal.Signals(signum).name}); finished results and checkpoints are kept, "
              "run the same command to resume", file=sys.stderr)
        return 128 + int(signum)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
