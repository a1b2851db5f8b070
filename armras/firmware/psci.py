"""PSCI 1.1 and SMCCC 1.1 discovery over HVC/SMC (Arm DEN 0022, DEN 0028), for one CPU.

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
SMC64 = 0x4000_0000  # the SMC64 variant of a function id sets bit 30

SUCCESS = 0
NOT_SUPPORTED = -1
INVALID_PARAMETERS = -2
ALREADY_ON = -4

PSCI_1_1 = 0x0001_0001
SMCCC_1_1 = 0x0001_0001
MIGRATE_TYPE_NOT_PRESENT = 2
AFFINITY_ON = 0

SUPPORTED = {PSCI_VERSION, CPU_SUSPEND, CPU_OFF, CPU_ON, AFFINITY_INFO, MIGRATE_INFO_TYPE,
             SYSTEM_OFF, SYSTEM_RESET, PSCI_FEATURES, SMCCC_VERSION}
# Functions that also have an SMC64 id (DEN 0022D table 5.1); the others are SMC32 only.
HAS_SMC64 = {CPU_SUSPEND, CPU_ON, AFFINITY_INFO}


class PowerControl(Protocol):
    def power_off(self, status: int, reason: str) -> None: ...

    def wait_for_interrupt(self) -> None: ...


class Psci:
    """Answers SMCCC function ids; `call` returns the value for x0."""

    def __init__(self, power: PowerControl, boot_mpidr: int = 0) -> None:
        self._power = power
        self._mpidr = boot_mpidr

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
            self._power.power_off(0, "PSCI SYSTEM_RESET (armras does not reboot; treated as power-off)")
            return SUCCESS
        if base == CPU_ON:
            if (x1 & 0xFF_00FF_FFFF) == self._mpidr:
                return ALREADY_ON
            log.info("PSCI CPU_ON for MPIDR %#x refused: the board has one CPU", x1)
            return INVALID_PARAMETERS
        if base == AFFINITY_INFO:
            return AFFINITY_ON if (x1 & 0xFF_00FF_FFFF) == self._mpidr else INVALID_PARAMETERS
        if base == CPU_OFF:
            self._power.power_off(0, "PSCI CPU_OFF of the only CPU")
            return SUCCESS
        if base == CPU_SUSPEND:
            self._power.wait_for_interrupt()
            return SUCCESS
        if base == MIGRATE_INFO_TYPE:
            return MIGRATE_TYPE_NOT_PRESENT
        log.debug("SMCCC function %#x not supported", fid)
        return NOT_SUPPORTED
