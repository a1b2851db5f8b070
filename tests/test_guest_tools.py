"""The guest-image tools run with the test suite (`make test`): static ELF checks
(layout, vector table, system register encodings) and the smoke run of every image
with its documented injections, exit statuses and marker lines."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

TOOLS = REPO / "guest_images" / "tools"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def test_check_elfs(guest_images: Path) -> None:
    elfs = sorted(str(p) for p in guest_images.glob("*.elf"))
    assert len(elfs) >= 3
    proc = subprocess.run([sys.executable, str(TOOLS / "check_elfs.py"), *elfs], capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("OK")


def test_smoke(guest_images: Path) -> None:
    proc = subprocess.run([sys.executable, str(TOOLS / "smoke.py"), str(guest_images)], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = proc.stdout.strip().splitlines()[-1]
    done, _, rest = total.partition("/")
    assert rest.startswith(done + " passed") and int(done) >= 6, proc.stdout
