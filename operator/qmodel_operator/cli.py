"""`qmodel` command line. Each subcommand lives in qmodel_operator/commands/<name>.py and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (returns the exit code)."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules; a module that does not exist yet is simply not offered.
COMMANDS = ("plan", "crd", "run", "cluster", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmodel", description="Quantize, gate and serve LLMs on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"qmodel_operator.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"qmodel_operator.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qmodel-operator")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
