"""Command line: ``unclip-tuner <command>``, plus ``cache-maps`` and ``tune-post`` aliases.

The CLI stays thin: it parses arguments, calls the library and prints. Heavy imports
(numba kernels, optuna, torch) happen inside the command that needs them, so
``unclip-tuner evaluate`` never imports torch or optuna.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__


class CLIError(Exception):
    """An error reported as one line, without a traceback."""


def progress(enabled: bool, desc: str, unit: str = "img"):
    """A ``tqdm`` wrapper for iterables on stderr, or ``None`` when disabled."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda it, **kw: tqdm(it, desc=desc, unit=unit, leave=False, file=sys.stderr, **kw)


# --------------------------------------------------------------------------- later stages
def _add_pending(sub, name: str, text: str) -> None:
    p = sub.add_parser(name, help=text, description=text)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=lambda args, _n=name: _pending(_n))


def _pending(name: str) -> int:
    raise CLIError(f"'{name}' is not available in unclip-tuner {__version__} yet")


# --------------------------------------------------------------------------- entry points
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unclip-tuner",
        description="Tune DBNet post-processing against the competition's CLEval from cached maps.")
    parser.add_argument("--version", action="version", version=f"unclip-tuner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    from .commands import register_all

    registered = register_all(sub)
    if "cache_maps" not in registered:
        _add_pending(sub, "cache-maps", "run a detector once and cache its probability maps")
    if "tune_post" not in registered:
        _add_pending(sub, "tune-post", "search post-processing parameters over a map cache")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"unclip-tuner {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"unclip-tuner {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unclip-tuner {args.command}: interrupted", file=sys.stderr)
        return 130


def cache_maps_main(argv: Optional[List[str]] = None) -> int:
    return main(["cache-maps", *(sys.argv[1:] if argv is None else argv)])


def tune_post_main(argv: Optional[List[str]] = None) -> int:
    return main(["tune-post", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
