"""armras: an ARMv8 RAS guest platform (GHESv2, CPER, SEA) emulated on Unicorn."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`armras.boot` and `armras.VM` (armras.api), imported when first used: the command line
    does not pay for them."""
    if name in ("boot", "VM"):
        from armras import api

        return getattr(api, name)
    raise AttributeError(f"module 'armras' has no attribute {name!r}")
