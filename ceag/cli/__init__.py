"""Command line: ``python -m ceag COMMAND`` (``python -m ceag --help`` lists them)."""

from __future__ import annotations

import os
import sys

from ceag.cli.parser import build_parser
from ceag.cli.store import UnknownRunIds
from ceag.config.errors import ConfigError, PredictionsFileError, UnknownAudit
from ceag.datasets import DatasetError
from ceag.results.bundle import BundleError
from ceag.results.predictions import RunNotFound
from ceag.store import StoreError


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (default: the process's arguments); its exit status.

    A bad setting exits with 2 and says which; a run that diverged with 3; what cannot be read or
    written with 1, naming it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UnknownRunIds, PredictionsFileError, UnknownAudit) as err:
        parser.exit(2, f"error: {err}\n")
    except BrokenPipeError:  # the output went into a command that stopped reading (``| head``): nothing failed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except (BundleError, StoreError, RunNotFound, DatasetError, ValueError, OSError, MemoryError) as err:
        parser.exit(1, f"error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: the run folder keeps its last checkpoint; run again to resume\n")
    return 0
