"""The ``lococourse`` command line: one subcommand per job, each implemented in its own module.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; register it in
``SUBCOMMANDS`` below (name → module path, one-line help).  Only the module of the command being run is
imported, and :func:`~lococourse.cli.common.run_command` runs it: a bad input prints one line
``lococourse <cmd>: error: …`` and exits 2 (no traceback unless ``--debug``), Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "verify-theory": ("lococourse.cli.verify_theory", "check Lemmas 1-3 and Theorem 1 numerically on random MoLRG instances"),
    "models": ("lococourse.cli.models", "list the registered models and whether each is available here"),
    "rank-curve": ("lococourse.cli.rank_curve", "Figure 2 for a model: rank ratio vs t, linearity vs λ (PNG + numbers)"),
    "edit": ("lococourse.cli.edit", "LOCO Edit (Algorithm 1) of one image: edited PNG + the direction, saved"),
    "transfer": ("lococourse.cli.transfer", "apply a saved editing direction to another image"),
    "t-edit": ("lococourse.cli.t_edit", "T-LOCO Edit (Algorithms 3-4) of a text-to-image sample: edited PNG + direction"),
    "doctor": ("lococourse.cli.doctor", "check this environment for the course (versions, GPU, hub, models, widgets) and say what to fix"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand's arguments are added (and only its module imported)."""
    parser = argparse.ArgumentParser(prog="lococourse", description="LOCO Edit course toolkit")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(_module=module)
        if only is None or only == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lococourse.cli.common import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in SUBCOMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed its usage and error: the same one-line style, exit 2
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    return run_command(args.command, importlib.import_module(args._module).run, args)


if __name__ == "__main__":
    sys.exit(main())
