"""Output files must never be input files: `--console X.elf` would truncate the image."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from armras.errors import ArmrasError


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (hard and symbolic links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:   # one does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting_inputs(outputs: Iterable[tuple[str, Path]], inputs: Iterable[tuple[str, Path]]) -> None:
    """ArmrasError naming the first output (option, path) that is one of the inputs."""
    inputs = [(what, Path(path)) for what, path in inputs]
    for option, out in outputs:
        for what, path in inputs:
            if same_file(Path(out), path):
                raise ArmrasError(f"{option} {out} is the {what} ({path}); refusing to overwrite an input")
