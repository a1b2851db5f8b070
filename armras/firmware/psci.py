"""PSCI 1.1 and SMCCC 1.1 discovery over HVC/SMC (Arm DEN 0022, DEN 0028).

CPU power management (CPU_ON, CPU_OFF, AFFINITY_INFO) is the board's: the `power`
object answers with PSCI return codes; guest arguments are checked here or there.

armras extension: SYSTEM_OFF takes an exit status in x1 (Linux passes 0) which becomes
the emulator's process exit code, so bare-metal test guests can report pass/fail.
"""
from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)

SMCCC_VERSION = 0x8000_0000
SMCCC_ARCH_FEATURES = 0x8000_0001
PSCI_VERSION = 0x8400_0000
CPU_SUSPEND = 0x8400_0001
CPU_OFF = 0x8400_0002
CPU_ON = 0x8400_0003
AFFINITY_INFO = 0x8400_0004
MIGRATE_INFO_TYPE = 0x8400_0006
SYSTEM_OFF = 0x8400_0008
SYSTEM_RESET = 0x8400_0009
PSCI_FEATURES = 0x8400_000A
SYSTEM_RESET2 = 0x8400_0012
SMC64 = 0x4000_0000  # the SMC64 variant of a function id sets bit 30

SUCCESS = 0
NOT_SUPPORTED = -1
INVALID_PARAMETERS = -2
DENIED = -3
ALREADY_ON = -4
ON_PENDING = -5
INVALID_ADDRESS = -9

PSCI_1_1 = 0x0001_0001
SMCCC_1_1 = 0x0001_0001
MIGRATE_TYPE_NOT_PRESENT = 2
AFFINITY_ON = 0
AFFINITY_OFF = 1
AFFINITY_ON_PENDING = 2
MPIDR_AFFINITY_MASK = 0xFF_00FF_FFFF   # Aff3 (39:32), Aff2-Aff0 (23:0)

SUPPORTED = {PSCI_VERSION, CPU_SUSPEND, CPU_OFF, CPU_ON, AFFINITY_INFO, MIGRATE_INFO_TYPE,
             SYSTEM_OFF, SYSTEM_RESET, SYSTEM_RESET2, PSCI_FEATURES, SMCCC_VERSION}
# Functions that also have an SMC64 id (DEN 0022D table 5.1); the others are SMC32 only.
HAS_SMC64 = {CPU_SUSPEND, CPU_ON, AFFINITY_INFO, SYSTEM_RESET2}
SYSTEM_WARM_RESET = 0             # SYSTEM_RESET2 reset_type: the one architectural type
RESET2_VENDOR = 1 << 31           # reset_type bit 31: vendor-specific types


class PowerControl(Protocol):
    def power_off(self, status: int, reason: str) -> None: ...

    def system_reset(self, reason: str) -> None: ...

    def wait_for_interrupt(self) -> None: ...

    def cpu_on(self, mpidr: int, entry: int, context_id: int) -> int: ...

    def cpu_off(self) -> int: ...

    def affinity_info(self, mpidr: int) -> int: ...


class Psci:
    """Answers SMCCC function ids; `call` returns the value for x0."""

    def __init__(self, power: PowerControl) -> None:
        self._power = power

    def call(self, fid: int, x1: int, x2: int, x3: int) -> int:
        fid &= 0xFFFF_FFFF
        base = fid & ~SMC64
        if fid & SMC64 and base not in HAS_SMC64:
            log.debug("SMCCC function %#x not supported (no SMC64 variant)", fid)
            return NOT_SUPPORTED
        if fid == SMCCC_VERSION:
            return SMCCC_1_1
        if fid == SMCCC_ARCH_FEATURES:
            return SUCCESS if (x1 & 0xFFFF_FFFF) in SUPPORTED else NOT_SUPPORTED
        if base == PSCI_VERSION:
            return PSCI_1_1
        if base == PSCI_FEATURES:
            queried = x1 & 0xFFFF_FFFF
            if queried & SMC64 and queried & ~SMC64 not in HAS_SMC64:
                return NOT_SUPPORTED
            return SUCCESS if queried & ~SMC64 in SUPPORTED else NOT_SUPPORTED
        if base == SYSTEM_OFF:
            self._power.power_off(x1 & 0xFF, "PSCI SYSTEM_OFF")
            return SUCCESS
        if base == SYSTEM_RESET:
            self._power.system_reset("PSCI SYSTEM_RESET")
            return SUCCESS
        if base == SYSTEM_RESET2:
            reset_type = x1 & 0xFFFF_FFFF
            if reset_type & RESET2_VENDOR:
                return NOT_SUPPORTED          # no vendor-specific resets on this board
            if reset_type != SYSTEM_WARM_RESET:
                return INVALID_PARAMETERS
            self._power.system_reset("PSCI SYSTEM_RESET2 (warm reset)")
            return SUCCESS
        if base == CPU_ON:
            if not fid & SMC64:
                x1, x2, x3 = x1 & 0xFFFF_FFFF, x2 & 0xFFFF_FFFF, x3 & 0xFFFF_FFFF
            return self._power.cpu_on(x1 & MPIDR_AFFINITY_MASK, x2, x3)
        if base == AFFINITY_INFO:
            if x2 & 0xFFFF_FFFF:      # lowest_affinity_level: only level 0 (CPUs) exists here
                return INVALID_PARAMETERS
            return self._power.affinity_info(x1 & MPIDR_AFFINITY_MASK)
        if base == CPU_OFF:
            return self._power.cpu_off()
        if base == CPU_SUSPEND:
            self._power.wait_for_interrupt()
            return SUCCESS
        if base == MIGRATE_INFO_TYPE:
            return MIGRATE_TYPE_NOT_PRESENT
        log.debug("SMCCC function %#x not supported", fid)
        return NOT_SUPPORTED
