"""The ``lococourse`` command line: one subcommand per job, each implemented in its own module.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; register it in
``SUBCOMMANDS`` below (name → module path, one-line help).
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lococourse", description="LOCO Edit course toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
