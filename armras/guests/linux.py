"""Booting an unmodified arm64 Linux kernel through its EFI stub.

The kernel Image (a PE/COFF executable with the EFI stub) is loaded as UEFI's LoadImage
would, the firmware tables are installed (armras.firmware.uefi), and the CPU enters the
stub as a UEFI application: EL1h, MMU on with an identity map, x0 = image handle,
x1 = system table. The stub does the rest (command line from LoadOptions, initrd via
LoadFile2, memory map, ExitBootServices) and jumps into the kernel.
"""
from __future__ import annotations

import logging
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from unicorn.arm64_const import UC_ARM64_REG_SP, UC_ARM64_REG_VBAR_EL1, UC_ARM64_REG_X30

from armras.arch.cpu import MAIR_EL1, SCTLR_C, SCTLR_EL1, SCTLR_I, SCTLR_M, TCR_EL1, TTBR0_EL1, GuestFault
from armras.errors import ImageError
from armras.firmware.efi_memory import PAGE, AllocationError, MemoryType
from armras.firmware.uefi import DETERMINISTIC_RNG_SEED, Uefi
from armras.guests.kaslr import KaslrSymbolizer
from armras.guests.image import Arm64Image, load_arm64_image
from armras.guests.kallsyms import kallsyms_symbolizer
from armras.guests.elf import LazySymbolizer, Symbolizer
from armras.board.machine import Machine
from armras.board.memmap import MiB

log = logging.getLogger(__name__)

MAIR_VALUE = 0x00FF            # attr0: Normal WB RA/WA; attr1: Device-nGnRnE
TCR_VALUE = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32)   # 39-bit VA, 4K, EPD1, 40-bit PA
SCTLR_RES1 = 0x30D0_0800
BLOCK_NORMAL = (1 << 10) | (3 << 8) | (0 << 2) | 1     # AF, inner shareable, attr0, block
BLOCK_DEVICE = (1 << 10) | (1 << 2) | (1 << 54) | (1 << 53) | 1   # AF, attr1, UXN, PXN, block
KERNEL_ALIGN = 2 * MiB
IMAGE_HEADER_SIZE = 64     # the arm64 Image header (Documentation/arch/arm64/booting.rst)
STACK_SIZE = 256 * 1024


def resolve_kernel(spec: str) -> Path:
    """A kernel path, or `debian:SERIES` for a Debian reference kernel already in the cache.

    Nothing is downloaded at run time: `armras fetch-kernel` / `make kernels` does that.
    """
    if spec.startswith("debian:"):
        from armras.guests.kernels import cached_kernel

        series = spec.split(":", 1)[1]
        path = cached_kernel(series)
        if path is None:
            raise ImageError(f"no cached Debian {series} kernel: run `armras fetch-kernel {series}` "
                             "(or `make kernels`) first")
        return path
    return Path(spec)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read {what}: {e.strerror}") from None


def _load_pe(uefi: Uefi, image: Arm64Image) -> int:
    size = image.load_size
    pages = -(-size // PAGE)
    try:
        base = uefi.memmap.allocate(pages, MemoryType.LOADER_CODE, align=KERNEL_ALIGN)
    except AllocationError:
        raise ImageError(f"{image.path}: a {size >> 20} MiB kernel does not fit in guest RAM") from None
    body = image.data[:size]
    uefi.mem.write(base, body + bytes(pages * PAGE - len(body)))
    for sec in image.sections:
        # Sections whose file layout differs from their memory layout (not the case for
        # Linux's Image, but LoadImage semantics): copy raw data to its RVA, zero the rest.
        if sec.raw_offset != sec.virtual_address and sec.raw_size:
            data = image.data[sec.raw_offset:sec.raw_offset + min(sec.raw_size, sec.virtual_size or sec.raw_size)]
            uefi.mem.write(base + sec.virtual_address, data)
    return base


def _identity_map(uefi: Uefi, ram_end: int) -> int:
    """Level-1 table of 1 GiB blocks: device memory below RAM, normal memory for RAM."""
    table = uefi.memmap.allocate(1, MemoryType.BOOT_SERVICES_DATA)
    ram_base = uefi.machine.ram.base
    entries = []
    for i in range(512):
        addr = i << 30
        if addr < ram_base:
            entries.append(addr | BLOCK_DEVICE)
        elif addr < ram_end:
            entries.append(addr | BLOCK_NORMAL)
        else:
            entries.append(0)
    uefi.mem.write(table, struct.pack("<512Q", *entries))
    return table


PANIC_GRACE_SECONDS = 2.0   # guest time to let the kernel print its panic report (and run kmsg dumpers)
# With panic=N, guest time beyond the N seconds before a missing reset is a failure: the
# kernel's kmsg dumpers (pstore on the ERST compresses and saves the log) run first, and
# a loaded host stretches its mdelay() loop (WFE wake-ups come late).
REBOOT_GRACE_SECONDS = 5.0
# The kernel's own panic line: at the start of a console line, after the printk time if any
# (user space echoing a saved log, e.g. /sys/fs/pstore, is not a panic).
PANIC_LINE = r"^(?:\[\s*\d+\.\d+\] )?Kernel panic - not syncing: (.*)"


@dataclass
class LinuxBoot:
    uefi: Uefi
    kernel: Path
    init_reached: tuple[float, float] | None = None   # (wall, guest) seconds when /init started
    reboot_delay: float | None = None   # "Rebooting in N seconds.." after a panic (panic=N): a warm reset comes
    started: float = field(default_factory=time.monotonic)


def _watch_console(machine: Machine, boot: LinuxBoot) -> None:
    def init_started(_m: re.Match[str]) -> None:
        boot.init_reached = (time.monotonic() - boot.started, machine.counter.guest_seconds())

    def panicked(m: re.Match[str]) -> None:
        reason = m.group(1).strip()

        def fail() -> None:
            if boot.reboot_delay is not None:
                # panic=N: the kernel resets the board after N seconds (PSCI SYSTEM_RESET),
                # which ends this boot; fail only if that never comes.
                delay, boot.reboot_delay = boot.reboot_delay, None
                machine.at_guest_time(machine.counter.guest_seconds() + delay + REBOOT_GRACE_SECONDS, fail,
                                      "kernel panic (no reset after 'Rebooting in')")
                return
            raise GuestFault(f"Linux panicked: {reason}")

        machine.at_guest_time(machine.counter.guest_seconds() + PANIC_GRACE_SECONDS, fail, "kernel panic")

    def rebooting(m: re.Match[str]) -> None:
        boot.reboot_delay = float(m.group(1))

    machine.on_console(r"Run /init as init process", init_started, "Linux reached /init")
    machine.on_console(PANIC_LINE, panicked, "Linux kernel panic")
    machine.on_console(r"Rebooting in (\d{1,4}) seconds", rebooting, "Linux reboots after its panic")


def boot_linux(machine: Machine, kernel: Path, initrd: Path | None, cmdline: str) -> LinuxBoot:
    """Prepare `machine` to run `kernel` through UEFI; `machine.run()` then boots it."""
    image = load_arm64_image(kernel)
    if not image.is_pe or image.pe_entry is None:
        raise ImageError(f"{kernel}: the Image has no EFI stub (PE header); armras boots arm64 Linux via UEFI")
    initrd_data = _read(initrd, "initrd") if initrd is not None else None
    uefi = Uefi(machine, cmdline=cmdline, initrd=initrd_data, variables=machine.persistent.variables,
                rng_seed=DETERMINISTIC_RNG_SEED if machine.config.deterministic else None)
    base = _load_pe(uefi, image)
    uefi.install_loaded_image(base, image.load_size)
    stack = uefi.memmap.allocate(STACK_SIZE // PAGE, MemoryType.BOOT_SERVICES_DATA)
    table = _identity_map(uefi, machine.ram.end)

    cpu = machine.cpu
    cpu.set_sysreg(MAIR_EL1, MAIR_VALUE)
    cpu.set_sysreg(TCR_EL1, TCR_VALUE)
    cpu.set_sysreg(TTBR0_EL1, table)
    cpu.set_sysreg(SCTLR_EL1, SCTLR_RES1 | SCTLR_M | SCTLR_C | SCTLR_I)
    machine.uc.reg_write_batch([(UC_ARM64_REG_SP, stack + STACK_SIZE), (UC_ARM64_REG_X30, uefi.return_stub),
                                (UC_ARM64_REG_VBAR_EL1, uefi.vectors)])
    cpu.set_x(0, uefi.image_handle)
    cpu.set_x(1, uefi.system_table)
    cpu.pc = base + image.pe_entry
    log.info("Linux %s loaded at %#x (%d MiB), EFI entry %#x, initrd %s, cmdline %r", kernel, base,
             image.load_size >> 20, cpu.pc, f"{len(initrd_data)} bytes" if initrd_data else "none", cmdline)
    system_map = kernel.with_name("System.map")
    if system_map.exists():
        machine.symbols = Symbolizer.from_system_map(system_map)
    if not len(machine.symbols):
        # No System.map, or Debian's stub: the Image's own kallsyms tables, decoded
        # (~0.1-0.2 s) only when a crash report or a symbol lookup needs them.
        machine.symbols = LazySymbolizer(lambda: kallsyms_symbolizer(image.data))
    # KASLR (EFI_RNG_PROTOCOL): the kernel runs at a random offset; look PCs up by image offset.
    machine.symbols = KaslrSymbolizer(machine.symbols, image.data[:IMAGE_HEADER_SIZE], image.load_size,
                                      lambda: [base] + [a for a, _pages in uefi.loader_code],
                                      machine.cpu, machine.mem)
    boot = LinuxBoot(uefi, kernel)
    _watch_console(machine, boot)
    return boot
