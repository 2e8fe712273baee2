"""Package data (see README.md beside this file): where the shipped model and the sample
catalogue live, and how a model name resolves to a model folder.

A model folder (written by :meth:`lamfast.LAM.save`) holds ``config.json`` and
``model.safetensors``; ``"default"`` names the shipped one, ``models/default`` here.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "default"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SAMPLE_CATALOGUE = "sample_apogee_xp.h5"


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """``"default"`` -> the shipped model's folder; a path -> that folder (checked).

    Raises
    ------
    FileNotFoundError
        No default model is installed, or the path is not a folder with a ``config.json``.
    """
    if str(name_or_path) == DEFAULT_MODEL:
        folder = default_model_path()
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError("no default model is installed in this lamfast "
                                    f"({folder} is absent); pass a trained model folder instead "
                                    "(--model PATH, a folder written by LAM.save)")
        return folder
    folder = Path(name_or_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model {str(name_or_path)!r}: no such folder (pass 'default' or a "
                                f"folder written by LAM.save: {CONFIG_FILE} + {WEIGHTS_FILE})")
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"model folder {folder} has no {CONFIG_FILE} (not written by LAM.save?)")
    return folder


def default_model_path() -> Path:
    """Where the shipped default model lives (``lamfast/resources/models/default``)."""
    return Path(__file__).resolve().parent / "models" / DEFAULT_MODEL


def sample_catalogue_path() -> Path:
    """The bundled sample catalogue: 1,000 real APOGEE DR17 stars with Gaia DR3 XP spectra
    in the paper's HDF5 layout (``lamfast demo`` labels it)."""
    return Path(str(resources.files(__name__).joinpath(SAMPLE_CATALOGUE)))
