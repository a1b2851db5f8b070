"""The UEFI variable store behind Get/SetVariable (UEFI 2.10 8.2, "Variable Services").

Per run (it survives warm resets, as a flash variable store does), optionally backed by a
file (`--efivars FILE`) holding the non-volatile variables. The store is bounded as
EDK2's ArmVirtQemu store is (PcdMaxVariableSize, PcdVariableStoreSize), so a guest
cannot make the host allocate more than STORE_SIZE bytes of variable data. The file
is JSON with a format tag; a file without the tag is refused (never overwritten), and
every save is a write to a temporary file in the same directory then an atomic rename.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from armras.errors import ArmrasError

log = logging.getLogger(__name__)

# Attributes (UEFI 2.10 8.2.1, SetVariable).
NON_VOLATILE = 0x01
BOOTSERVICE_ACCESS = 0x02
RUNTIME_ACCESS = 0x04
HARDWARE_ERROR_RECORD = 0x08
AUTHENTICATED_WRITE_ACCESS = 0x10           # deprecated: SetVariable returns EFI_UNSUPPORTED
TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
APPEND_WRITE = 0x40
ENHANCED_AUTHENTICATED_ACCESS = 0x80
STORED_ATTRIBUTES = NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS | HARDWARE_ERROR_RECORD
AUTH_ATTRIBUTES = AUTHENTICATED_WRITE_ACCESS | TIME_BASED_AUTHENTICATED_WRITE_ACCESS | ENHANCED_AUTHENTICATED_ACCESS
KNOWN_ATTRIBUTES = STORED_ATTRIBUTES | AUTH_ATTRIBUTES | APPEND_WRITE

MAX_VARIABLE_SIZE = 0x2000      # name (UCS-2, with its NUL) + data, as EDK2 ArmVirtQemu
STORE_SIZE = 0x10000            # all variables' names + data
MAX_NAME_CHARS = MAX_VARIABLE_SIZE // 2
FILE_FORMAT = "armras-efivars"
FILE_VERSION = 1
MAX_FILE_SIZE = 4 * STORE_SIZE + 0x10000     # base64 + JSON overhead of a full store


class VariableError(Exception):
    """A request the store refuses; `status` names the UEFI status (see uefi.py)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Variable:
    attributes: int
    data: bytes


def _cost(name: str, data: bytes) -> int:
    """Bytes a variable takes: its UCS-2 name with the NUL (a surrogate pair is two CHAR16) + data."""
    return len(name.encode("utf-16-le")) + 2 + len(data)


@dataclass
class VariableStore:
    path: Path | None = None
    variables: dict[tuple[bytes, str], Variable] = field(default_factory=dict)
    read_only: set[tuple[bytes, str]] = field(default_factory=set)   # the firmware's own (define())

    def reset(self) -> None:
        """A platform reset: volatile variables are lost (UEFI 2.10 8.2: they last until the
        next reset), and with them what the firmware defined for the boot that ended."""
        self.variables = {k: v for k, v in self.variables.items() if v.attributes & NON_VOLATILE}
        self.read_only.clear()

    def define(self, guid: bytes, name: str, attributes: int, data: bytes) -> None:
        """A variable the firmware itself provides for this boot, read-only for the OS
        (SetVariable gets WRITE_PROTECTED, as EDK2's variable lock gives)."""
        _check_name(name)
        self.variables[(guid, name)] = Variable(attributes & STORED_ATTRIBUTES, bytes(data))
        self.read_only.add((guid, name))

    @classmethod
    def open(cls, path: Path) -> "VariableStore":
        """The store saved in `path` (created on the first non-volatile write if missing)."""
        store = cls(path=path)
        if not path.parent.is_dir():
            raise ArmrasError(f"--efivars {path}: no directory {path.parent}")
        if not path.exists():
            return store
        if not path.is_file():
            raise ArmrasError(f"--efivars {path}: not a regular file")
        if path.stat().st_size > MAX_FILE_SIZE:
            raise ArmrasError(f"--efivars {path}: {path.stat().st_size} bytes, not an armras variable store "
                              f"(at most {MAX_FILE_SIZE}); refusing to use or overwrite it")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
                raise ValueError("no format tag")
            if doc.get("version") != FILE_VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            total = 0
            for entry in doc["variables"]:
                key = (uuid.UUID(entry["guid"]).bytes_le, str(entry["name"]))
                attributes = int(entry["attributes"])
                data = base64.b64decode(entry["data"], validate=True)
                _check_name(key[1])
                if attributes & ~STORED_ATTRIBUTES or not attributes & NON_VOLATILE:
                    raise ValueError(f"variable {key[1]!r}: attributes {attributes:#x}")
                total += _cost(key[1], data)
                if _cost(key[1], data) > MAX_VARIABLE_SIZE or total > STORE_SIZE:
                    raise ValueError("larger than the store")
                store.variables[key] = Variable(attributes, data)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ArmrasError(f"--efivars {path}: not an armras variable store ({e}); "
                              "refusing to use or overwrite it") from None
        log.info("UEFI variables: %d loaded from %s", len(store.variables), path)
        return store

    # --- services ----------------------------------------------------------------------
    def used(self) -> int:
        return sum(_cost(name, v.data) for (_, name), v in self.variables.items())

    def get(self, guid: bytes, name: str, *, runtime: bool = False) -> Variable:
        var = self.variables.get((guid, name))
        if var is None or runtime and not var.attributes & RUNTIME_ACCESS:
            raise VariableError("NOT_FOUND", f"no variable {name!r}")
        return var

    def next_name(self, guid: bytes, name: str, *, runtime: bool = False) -> tuple[bytes, str]:
        """GetNextVariableName: the variable after (guid, name); the first one for name ''.
        After ExitBootServices only RUNTIME_ACCESS variables exist."""
        keys = [k for k, v in self.variables.items() if not runtime or v.attributes & RUNTIME_ACCESS]
        if name == "":
            index = 0
        else:
            try:
                index = keys.index((guid, name)) + 1
            except ValueError:
                raise VariableError("INVALID_PARAMETER", f"{name!r} is not a variable") from None
        if index >= len(keys):
            raise VariableError("NOT_FOUND", "no more variables")
        return keys[index]

    def set(self, guid: bytes, name: str, attributes: int, data: bytes, *, runtime: bool) -> None:
        """SetVariable with the spec's checks; `runtime`: after ExitBootServices."""
        _check_name(name)
        if attributes & ~KNOWN_ATTRIBUTES:
            raise VariableError("INVALID_PARAMETER", f"unknown attribute bits {attributes:#x}")
        if attributes & AUTH_ATTRIBUTES:
            raise VariableError("UNSUPPORTED", "authenticated variables are not supported")
        if attributes & RUNTIME_ACCESS and not attributes & BOOTSERVICE_ACCESS:
            raise VariableError("INVALID_PARAMETER", "RUNTIME_ACCESS without BOOTSERVICE_ACCESS")
        if attributes & HARDWARE_ERROR_RECORD and not attributes & NON_VOLATILE:
            raise VariableError("INVALID_PARAMETER", "HARDWARE_ERROR_RECORD must be non-volatile")
        if (guid, name) in self.read_only:
            raise VariableError("WRITE_PROTECTED", f"{name!r} is read-only (defined by the firmware)")
        existing = self.variables.get((guid, name))
        append = bool(attributes & APPEND_WRITE)
        stored = attributes & STORED_ATTRIBUTES
        if runtime and stored and not stored & RUNTIME_ACCESS:
            raise VariableError("INVALID_PARAMETER", "after ExitBootServices a variable needs RUNTIME_ACCESS")
        if runtime and existing is not None and not existing.attributes & RUNTIME_ACCESS:
            raise VariableError("WRITE_PROTECTED", f"{name!r} is a boot-services-only variable")
        if not data and not append or not stored & (BOOTSERVICE_ACCESS | RUNTIME_ACCESS) and not append:
            # Size 0, or no access attributes: delete (8.2.1 "Description").
            if existing is None:
                raise VariableError("NOT_FOUND", f"no variable {name!r} to delete")
            del self.variables[(guid, name)]
            self._save(existing.attributes)
            return
        if existing is not None and existing.attributes != stored:
            raise VariableError("INVALID_PARAMETER", f"{name!r} exists with attributes {existing.attributes:#x}")
        if append and existing is None and not data:
            return
        new = (existing.data if append and existing is not None else b"") + data
        if _cost(name, new) > MAX_VARIABLE_SIZE:
            raise VariableError("INVALID_PARAMETER", f"{name!r}: {len(new)} bytes exceed the variable size limit")
        growth = _cost(name, new) - (_cost(name, existing.data) if existing is not None else 0)
        if self.used() + growth > STORE_SIZE:
            raise VariableError("OUT_OF_RESOURCES", "the variable store is full")
        self.variables[(guid, name)] = Variable(stored, new)
        self._save(stored)

    def query(self, attributes: int) -> tuple[int, int, int]:
        """QueryVariableInfo: (maximum storage, remaining storage, maximum variable size)."""
        if attributes & ~KNOWN_ATTRIBUTES or not attributes & (BOOTSERVICE_ACCESS | RUNTIME_ACCESS):
            raise VariableError("INVALID_PARAMETER", f"attributes {attributes:#x}")
        if attributes & AUTH_ATTRIBUTES:
            raise VariableError("UNSUPPORTED", "authenticated variables are not supported")
        return STORE_SIZE, STORE_SIZE - self.used(), MAX_VARIABLE_SIZE

    # --- the file --------------------------------------------------------------------
    def _save(self, attributes: int) -> None:
        if self.path is None or not attributes & NON_VOLATILE:
            return
        doc = {"format": FILE_FORMAT, "version": FILE_VERSION, "variables": [
            {"guid": str(uuid.UUID(bytes_le=g)), "name": n, "attributes": v.attributes,
             "data": base64.b64encode(v.data).decode()}
            for (g, n), v in self.variables.items() if v.attributes & NON_VOLATILE]}
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            log.warning("UEFI variables: could not save %s: %s", self.path, e)


def _check_name(name: str) -> None:
    if not name or "\0" in name or len(name) >= MAX_NAME_CHARS:
        raise VariableError("INVALID_PARAMETER", f"bad variable name {name[:40]!r}")


__all__ = ["MAX_VARIABLE_SIZE", "STORE_SIZE", "Variable", "VariableError", "VariableStore"]
