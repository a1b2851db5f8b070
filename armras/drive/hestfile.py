"""A HEST description in TOML: the error sources of the user's server (`armras run --hest FILE`).

    [[hest.source]]
    id = 0
    notify = "sea"                 # sea | gpio | sdei | polled
    [[hest.source]]
    id = 5
    notify = "sdei"
    event = 805                    # the SDEI event number (the notification's vector)
    priority = "normal"            # normal (default) | critical
    shared = false                 # a shared event (routed to any CPU) instead of a private one
    [[hest.source]]
    id = 7
    notify = "polled"
    poll_interval_ms = 100
    ghes = "v1"                    # GHES without a Read Ack register (default "v2": GHESv2)
    block_length = 4096            # Error Status Block Length (default 1024)

The same `[[hest.source]]` tables may appear in a scenario file (armras.drive.regress).
Sources are listed in the HEST in the order given; injections of a kind go to the first
source notified that way unless they name one with source=N (armras.drive.inject).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from armras.errors import ArmrasError
from armras.ras.sources import SourceSpec, parse_sources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def sources_from_document(data: dict[str, Any], where: str, *, allow_other_keys: bool = False) -> tuple[SourceSpec, ...]:
    """The `hest.source` list of a parsed TOML document."""
    hest = data.get("hest")
    if not isinstance(hest, dict) or "source" not in hest:
        raise ArmrasError(f"{where}: expected [[hest.source]] tables")
    other = sorted(set(hest) - {"source"})
    if other:
        raise ArmrasError(f"{where}: unknown key hest.{other[0]} (only [[hest.source]] tables)")
    if not allow_other_keys:
        extra = sorted(set(data) - {"hest"})
        if extra:
            raise ArmrasError(f"{where}: unknown key {extra[0]!r} (a HEST file has only [[hest.source]] tables)")
    return parse_sources(hest["source"], where)


def load_hest_file(path: Path) -> tuple[SourceSpec, ...]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ArmrasError(f"cannot read HEST description {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArmrasError(f"{path}: not valid TOML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return sources_from_document(data, str(path))


__all__ = ["load_hest_file", "sources_from_document"]
