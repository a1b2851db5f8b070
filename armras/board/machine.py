"""The virt board: memory map, devices, firmware tables, RAS error sources and policy.

The board is wired from armras.board.memmap.VIRT_MEMMAP the way QEMU's hw/arm/virt.c wires
its memmap: one table, one device per entry. Synchronous exceptions and firmware calls
are handled inside Unicorn hooks; the run loop that time-shares the core between the
vCPUs and runs host-side actions between slices is armras.board.scheduler.
"""
from __future__ import annotations

import ctypes
import logging
import mmap
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from unicorn import (
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_MEM_PROT,
    UC_HOOK_MEM_UNMAPPED,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    Uc,
    UcError,
)
from unicorn.arm64_const import UC_ARM64_REG_ELR_EL1
from unicorn.unicorn_py3.unicorn import UcContext

from armras.firmware.acpi import build_acpi_tables, board_platform
from armras.arch.hooks import (CTR_EL0, DISR_A, DISR_SYNDROME_MASK, BlockHook, EsbWatch, ExceptionHook,
                               ICacheMaintenance, SysregTrap)
from armras.arch.cpu import (
    EXCP_BKPT,
    EXCP_DATA_ABORT,
    EXCP_HVC,
    EXCP_PREFETCH_ABORT,
    EXCP_SMC,
    EXCP_SWI,
    EXCP_UDEF,
    PSTATE_EL_MASK,
    PSTATE_EL_SHIFT,
    PSTATE_I,
    PSTATE_SP,
    AET_FOR_CPER_SEVERITY,
    AET_UC,
    SERROR_AETS,
    SPSR_EL1,
    VECTOR_SERROR,
    VECTOR_SYNC,
    Cpu,
    GuestFault,
    describe_esr,
    safe_hook,
    bus_error_syndrome,
    sea_syndrome,
    serror_aet_name,
    serror_syndrome,
)
from armras.arch.faults import fault_address
from armras.devices.erst import ErstDevice
from armras.devices.ged import ACPI_GED_ERROR_EVT, Ged
from armras.devices.pcie import ROOT_PORT_DEVFN, SWITCH_ROOT_PORT_DEVFN, PcieHost
from armras.devices.gicv2m import GicV2m
from armras.firmware.acpi.pci import intx_gsi
from armras.firmware.acpi.tables import board_pci_host_bridge
from armras.devices.gicv2 import GicV2
from armras.devices.pl011 import Pl011
from armras.devices.pl031 import Pl031
from armras.devices.timer import GenericTimer
from armras.errors import ArmrasError, GuestAddressError
from armras.events import EventLog, hex_or_none
from armras.firmware.psci import Psci
from armras.timing.guesttime import DeterministicClock, make_counter
from armras.guests.elf import LoadedImage, Symbolizer, load_elf
from armras.board.memmap import (
    DEFAULT_RAM_SIZE,
    ERST_EXCHANGE_SIZE,
    FW_RESERVED_SIZE,
    GICV2M_SPI_COUNT,
    PPI_NONSEC_PHYS_TIMER,
    PPI_VIRT_TIMER,
    VIRT_MEMMAP,
    FirmwareLayout,
    MiB,
    intid,
)
from armras.board.console import Console
from armras.board.crash import crash_report
from armras.board.einj import make_einj
from armras.board.memory import PAGE_MASK, PAGE_SIZE, PhysicalMemory, Region
from armras.board.persistent import PersistentState
from armras.board.scheduler import (SEA_HOLD_LIMIT, RunLimits, RunawayGuest, Scheduler)
from armras.board.vcpu import MAX_CPUS, MPIDR_RES1, VMPIDR_EL2, Power, VCpu, mpidr_of
from armras.firmware import psci as psci_codes
from armras.ras import cper
from armras.ratelimit import RateLimiter
from armras.arch.mmu import translate
from armras.firmware.sdei import EventDef, SdeiDispatcher, is_sdei_call
from armras.ras.bert import BootErrorRegion
from armras.ras.ghes import ErrorSources, GhesSource
from armras.ras.report import ErrorReporter
from armras.ras.sources import BOARD_SOURCES, Notify, SourceSpec

log = logging.getLogger(__name__)

ADDRESS_MAX = 0xFFFF_FFFF_FFFF_FFFF
_FETCH_ERRORS = (UC_ERR_FETCH_UNMAPPED, UC_ERR_FETCH_PROT)


@dataclass
class MachineConfig:
    ram_size: int = DEFAULT_RAM_SIZE
    console: BinaryIO | None = None          # None: the process's stdout
    timeout: float | None = None             # wall-clock seconds
    max_insns: int | None = None             # instruction limit (enables counting)
    deterministic: bool = False              # guest time from instruction counts (armras.timing.guesttime)
    cpus: int = 1                            # vCPUs (1-8), round-robin on one core (armras.board.vcpu)
    hest: tuple[SourceSpec, ...] = BOARD_SOURCES   # the error sources (armras.ras.sources)
    events: EventLog | None = None           # where the run's events go (armras.events; None: nowhere)


@dataclass
class RunResult:
    status: int
    reason: str
    wall_seconds: float
    guest_seconds: float
    instructions: int
    reset: bool = False           # the guest asked for a warm reset (armras.drive.session reboots)


@dataclass(frozen=True)
class _BoardNotification:
    """How the board delivers one notification kind (armras.ras.report.Notification)."""

    check: Callable[[SourceSpec, int | None], None]
    notify: Callable[[SourceSpec, int | None], None]


def _always(spec: SourceSpec, cpu: int | None) -> None:
    """A notification that needs no CPU: nothing can stop it."""


@dataclass
class _Unmapped:
    """A guest access Unicorn could not complete, as its memory hook saw it."""

    access: int
    address: int
    size: int
    # The CPU as it was at the faulting instruction (Unicorn syncs the PC before calling
    # the hook). Most accesses stop right there, but a helper-based one (DC ZVA) runs on
    # to the next load/store before Unicorn notices the error; restoring this snapshot
    # makes the abort precise, as the architecture requires.
    context: UcContext


class Machine:
    """One armras board with one AArch64 CPU."""

    def __init__(self, config: MachineConfig | None = None, persistent: PersistentState | None = None) -> None:
        self.config = config or MachineConfig()
        self.persistent = persistent or PersistentState()     # what survives a warm reset
        if self.config.ram_size < 16 * MiB or self.config.ram_size % (2 * MiB):
            raise ArmrasError(f"RAM size {self.config.ram_size:#x} must be a multiple of 2 MiB and at least 16 MiB")
        if not 1 <= self.config.cpus <= MAX_CPUS:
            raise ArmrasError(f"{self.config.cpus} CPUs: the board has 1 to {MAX_CPUS} (GICv2)")
        self.cpu = Cpu()                         # the running vCPU's registers, exception entry
        self.uc: Uc = self.cpu.uc
        self.scheduler = Scheduler(self, RunLimits(self.config.timeout, self.config.max_insns),
                                   reset_context=self.uc.context_save())
        self.exit_status: int | None = None
        self.exit_reason = ""
        self.reset_requested = False
        self._unmapped: _Unmapped | None = None
        self.poisoned: set[int] = set()
        self.symbols = Symbolizer()
        self._hooks: list[int] = []
        self.control: object | None = None       # the open control socket server, if any
        self.scheduler.external_wakeups = lambda: self.control is not None
        # Warnings a guest can trigger again and again (unserviced calls, bus errors).
        self.warnings = RateLimiter(log)
        self.events = self.config.events or EventLog()
        # Guest time starts at the first instruction (the run restarts the counter then).
        self.events.bind_clock(lambda: (self.counter.guest_seconds() if self.instructions else 0.0,
                                        self.instructions))

        self._map_memory()
        self.blocks = BlockHook(self.uc)
        self.blocks.sea_safe = self.sea_safe_at
        self.counter = make_counter(self.uc, self.blocks, self.config.deterministic)
        self.console = Console(self.config.console)
        self.gic = GicV2(on_change=self._irq_changed, num_cpus=self.config.cpus,
                         current_cpu=lambda: self.current)
        self.vcpus = [VCpu(i, mpidr_of(i), GenericTimer(self.counter, self.gic.cpu_port(i), on_change=self._rearm,
                                                         phys_intid=PPI_NONSEC_PHYS_TIMER,
                                                         virt_intid=PPI_VIRT_TIMER))
                      for i in range(self.config.cpus)]
        self.vcpus[0].power = Power.ON           # the boot CPU; the others wait for PSCI CPU_ON
        self.uc.cpr_write(*VMPIDR_EL2, MPIDR_RES1 | self.vcpus[0].mpidr)
        self.uart = Pl011(self.console.write, self.gic, intid("uart"))
        self.det = (DeterministicClock(self.counter,
                                       lambda: [v.timer for v in self.vcpus if v.power is not Power.OFF])
                    if self.config.deterministic else None)
        self.rtc = Pl031(now=self.det.rtc_now) if self.det is not None else Pl031()
        self.ged = Ged(self.gic, intid("ged"))
        self.erst = ErstDevice(self.persistent.erst, self.mem, self.layout.erst_exchange_base)
        self.einj = make_einj(self)              # EINJ action registers (armras.board.einj)
        # GICv2m MSI frame (MADT GIC MSI Frame), the doorbell of the root ports' MSIs.
        self.gic_v2m = GicV2m(self.gic, VIRT_MEMMAP["gic_v2m"].base, intid("gic_v2m"), GICV2M_SPI_COUNT)
        # PCIe: root port 00:01.0 with an endpoint below it, root port 00:02.0 with a switch below
        # it (INTA routed by the DSDT's _PRT; MSI through the GICv2m frame once the OS enables it).
        self.pcie = PcieHost(self.gic, intx_gsi(board_pci_host_bridge(), ROOT_PORT_DEVFN >> 3, 0),
                             intx_gsi(board_pci_host_bridge(), SWITCH_ROOT_PORT_DEVFN >> 3, 0),
                             msi=self.gic_v2m.msi_write)
        # The board, as QEMU virt's memmap: name -> device (frames of the GIC separately).
        self.devices = {
            "gic_dist": self.gic.distributor,
            "gic_cpu": self.gic.cpu_interface,
            "gic_v2m": self.gic_v2m,
            "uart": self.uart,
            "rtc": self.rtc,
            "ged": self.ged,
            "erst": self.erst,
            "einj": self.einj,
            "pcie_ecam": self.pcie,
        }
        for name, dev in self.devices.items():
            self._map_device(name, dev)

        self.psci = Psci(self)
        self.hvc_handlers: dict[int, Callable[[Cpu], None]] = {0: self._smccc_call}
        self._install_firmware()
        self._install_hooks()
        for page in sorted(self.persistent.poisoned):   # kept across a warm reset (keep_poison)
            self.poison(page)

    # --- construction ----------------------------------------------------------------
    def _map_memory(self) -> None:
        flash = VIRT_MEMMAP["flash"]
        ram_base = VIRT_MEMMAP["ram"].base
        size = self.config.ram_size
        self.uc.mem_map(flash.base, flash.size, UC_PROT_READ | UC_PROT_EXEC)
        # RAM is host memory we own (mem_map_ptr), so poisoning one page is a cheap
        # split of the mapping rather than a copy of all of RAM.
        self._ram = mmap.mmap(-1, size)
        self._ram_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self._ram))
        self.uc.mem_map_ptr(ram_base, size, UC_PROT_ALL, self._ram_ptr)
        self.ram = Region("ram", ram_base, size)
        self.mem = PhysicalMemory(self.uc, [Region("flash", flash.base, flash.size), self.ram],
                                  host={self.ram.name: memoryview(self._ram)}, unmapped=self.poisoned)
        self.layout = FirmwareLayout(ram_base, size)

    def _map_device(self, name: str, dev: object) -> None:
        entry = VIRT_MEMMAP[name]

        def read(uc: Uc, offset: int, size: int, _ud: object) -> int:
            return dev.read(offset, size)  # type: ignore[attr-defined]

        def write(uc: Uc, offset: int, size: int, value: int, _ud: object) -> None:
            dev.write(offset, size, value)  # type: ignore[attr-defined]

        self.uc.mmio_map(entry.base, entry.size, self._callback(read), None, self._callback(write), None)

    def _install_firmware(self) -> None:
        """What platform firmware leaves in RAM: ACPI tables and the GHES error blob."""
        hest = self.config.hest
        platform = board_platform(self.ram.base, self.ram.size, tuple(v.mpidr for v in self.vcpus), hest)
        self.hw_errors = platform.hw_errors
        self.acpi = build_acpi_tables(platform, self.layout.acpi_base)
        self.mem.write(self.acpi.base, self.acpi.blob)
        self.sources = ErrorSources(self.mem, self.hw_errors, hest, events=self.events)
        self.sources.install()
        self.bert = BootErrorRegion(self.mem, *platform.bert_region)
        self.bert.install(self.persistent.bert_records)
        self.sdei = SdeiDispatcher(self, len(self.vcpus), [EventDef(s.event, s.priority, s.shared)
                                                           for s in hest if s.notify is Notify.SDEI],
                                   event_log=self.events)
        # One RAS path for every kind: record in the source, then notify as it says.
        self.ras = ErrorReporter(self.sources, {
            Notify.SEA: _BoardNotification(self._check_cpu, self._notify_sea),
            Notify.GPIO: _BoardNotification(_always, self._notify_gpio),
            Notify.SDEI: _BoardNotification(self._check_sdei, self._notify_sdei),
            Notify.POLLED: _BoardNotification(_always, self._notify_polled),
            Notify.SEI: _BoardNotification(self._check_cpu, self._notify_sei),
        })

    @property
    def reserved_range(self) -> tuple[int, int]:
        return self.layout.reserved_base, FW_RESERVED_SIZE

    @property
    def erst_exchange(self) -> tuple[int, int]:
        """(address, size) of the ERST exchange buffer in firmware-reserved RAM."""
        return self.layout.erst_exchange_base, ERST_EXCHANGE_SIZE

    def _install_hooks(self) -> None:
        add = self._hooks.append
        self.exceptions = ExceptionHook(self.uc, self._callback(self._on_intr, intr=True), self.cpu.context_blob,
                                        self.cpu.exception_offset)
        self.cpu.other_entries = lambda: self.exceptions.entries
        # Bounded to the physical ranges outside RAM (plus each poisoned page, see poison()):
        # Unicorn keeps every store to a page covered by any memory hook on its slow path
        # for ever (cputlb.c notdirty_write checks uc_mem_hook_installed), so a hook over
        # the whole address space would halve the guest's speed.
        self._unmapped_cb = self._callback(self._on_unmapped)
        # Flash is read-only and MMIO is not executable: a store to flash or a fetch from
        # a device is a bus error (an external abort), like an unassigned address.
        for begin, end in ((0, self.ram.base - 1), (self.ram.end, ADDRESS_MAX)):
            add(self.uc.hook_add(UC_HOOK_MEM_UNMAPPED | UC_HOOK_MEM_PROT, self._unmapped_cb, begin=begin, end=end))
        self.sysregs = SysregTrap(self.uc, self._callback(self._on_sysreg), self.blocks)
        self.sysregs.enable_ras()      # ID_AA64PFR0_EL1.RAS = 1: SErrors carry RAS syndromes (inject_serror)
        # Unicorn misses some stores to code (see ICacheMaintenance): the guest's IC
        # IVAU/IALLU[IS] drop the translations it made stale.
        self.icache = ICacheMaintenance(self.uc, self.blocks, 4 << (self.cpu.sysreg(CTR_EL0) & 0xF))
        self.esb = EsbWatch(self.uc, self._fetch_insn, self._on_esb, self._callback)
        self.sysregs.trap_counters(self.det is not None)
        if self.det is not None:
            self.counter.serve_natively(self.sysregs.serve_counters(self.counter.ticks_per_insn))

    @property
    def timer(self) -> GenericTimer:
        """The running CPU's generic timer (each CPU has its own, on its own PPIs)."""
        return self.vcpus[self.current].timer

    @property
    def instructions(self) -> int:
        """Guest instructions executed so far (counted per translation block entered)."""
        return self.blocks.instructions

    # --- loading ---------------------------------------------------------------------
    def load_elf(self, path: Path) -> LoadedImage:
        image = load_elf(path, self.mem, reserved=self.reserved_range)
        self.symbols = image.symbols
        # Boot protocol for bare-metal guests: EL1h, MMU off, x0 = ACPI RSDP.
        self.cpu.set_x(0, self.acpi.rsdp_address)
        self.cpu.pc = image.entry
        return image

    def resolve_address(self, text: str) -> int:
        """A physical address from the user: a number or an ELF symbol of the guest."""
        try:
            return int(text, 0)
        except ValueError:
            addr = self.symbols.address_of(text)
            if addr is None:
                raise ArmrasError(f"{text!r} is neither an address nor a symbol of the guest image") from None
            return addr

    # --- hooks (run inside emu_start) ------------------------------------------------
    def _callback(self, fn: Callable[..., object], intr: bool = False) -> Callable[..., object]:
        """Wrap a Unicorn callback: errors are deferred; only an INTR hook stops the CPU directly."""
        inner = safe_hook(fn, self._hook_failed)
        if not intr:
            return inner

        scheduler = self.scheduler

        def wrapper(*args: object) -> object:
            scheduler.intr_thread = threading.get_ident()
            try:
                return inner(*args)
            finally:
                scheduler.intr_thread = None

        return wrapper

    def _hook_failed(self, error: BaseException) -> None:
        self.scheduler.hook_failed(error)

    def _on_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        cpu = self.cpu
        if intno in (EXCP_HVC, EXCP_SMC):
            imm = cpu.exception_info().syndrome & 0xFFFF
            handler = self.hvc_handlers.get(imm)
            if handler is None:
                # A guest may retry forever: log a few, then "... repeated N times".
                self.warnings.warning((intno, imm), "guest %s #%#x at %#x: no firmware service; returning NOT_SUPPORTED",
                                "SMC" if intno == EXCP_SMC else "HVC", imm, cpu.pc)
                cpu.set_x(0, -1)
            else:
                handler(cpu)
            return
        if intno in (EXCP_UDEF, EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT, EXCP_BKPT):
            info = cpu.exception_info()
            if info.target_el != 1:
                raise GuestFault(f"guest exception routed to EL{info.target_el} at {cpu.pc:#x} "
                                 f"({describe_esr(info.syndrome)}); the board has no EL2/EL3 software")
            far = info.vaddress if intno in (EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT) else None
            cpu.take_exception(VECTOR_SYNC, elr=cpu.pc, esr=info.syndrome, far=far)
            return
        raise GuestFault(f"unsupported exception {intno} at {cpu.pc:#x}")

    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int, _ud: object) -> bool:
        self._unmapped = _Unmapped(access, address, size, self.uc.context_save())
        return False

    def _on_sysreg(self, is_write: bool, reg: int, cp: object) -> int:
        """A trapped MRS/MSR (timer registers; counters in deterministic mode).

        Returns 1 when emulated here (a read has written its register), 0 to run natively.
        """
        if not is_write and self.det is not None:
            value = self.det.read_counter(cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)  # type: ignore[attr-defined]
            if value is not None:
                self.cpu.regs.write(reg, value)
                return 1
        if not self.timer.handles(cp.op0, cp.op1, cp.crn, cp.crm):  # type: ignore[attr-defined]
            return 0
        if is_write:
            self.timer.write(cp.crm, cp.op2, cp.val)  # type: ignore[attr-defined]
        else:
            self.cpu.regs.write(reg, self.timer.read(cp.crm, cp.op2))  # type: ignore[attr-defined]
        return 1

    # --- running (armras.board.scheduler) ----------------------------------------------
    def run(self) -> RunResult:
        """Run the guest until it powers off or asks for a reset (or a limit/fault raises)."""
        try:
            wall = self.scheduler.run()
        except (GuestFault, RunawayGuest) as e:
            e.args = (f"{e.args[0]}\n{self.crash_report()}",)
            raise
        return RunResult(self.exit_status, self.exit_reason, wall,
                         self.counter.guest_seconds(), self.instructions, self.reset_requested)

    @property
    def current(self) -> int:
        """Index of the vCPU on the core."""
        return self.scheduler.current

    def request_stop(self) -> None:
        """Stop the CPU at the next instruction boundary (any thread, any hook)."""
        self.scheduler.request_stop()

    def defer(self, action: Callable[[], None], description: str) -> None:
        """Run `action` at the next stop of the CPU (thread-safe)."""
        self.scheduler.defer(action, description)

    def at_guest_time(self, seconds: float, action: Callable[[], None], description: str) -> None:
        self.scheduler.at_guest_time(seconds, action, description)

    def at_instruction(self, count: int, action: Callable[[], None], description: str) -> None:
        self.scheduler.at_instruction(count, action, description)

    def pause(self) -> None:
        """Stop running the guest until resume(); its virtual time is frozen meanwhile."""
        self.scheduler.pause()

    def resume(self) -> None:
        self.scheduler.resume()

    @property
    def paused(self) -> bool:
        return self.scheduler.paused

    @property
    def tb_flushes(self) -> int:
        """Translation flushes the guest's IC IALLU/IVAU asked for."""
        return self.scheduler.tb_flushes

    def between_slices(self) -> None:
        """The scheduler's turn between slices: read-ack events (armras.events), only while a record waits."""
        self.sources.observe_acks()

    def flush_console(self) -> None:
        self.console.flush()

    def close(self) -> None:
        self.warnings.flush()
        self.scheduler.close()

    def _irq_changed(self) -> None:
        if any(v.power is Power.ON and self.gic.irq_asserted(v.index) for v in self.vcpus):
            self.request_stop()

    def _rearm(self) -> None:
        self.scheduler.rearm()

    def power_off(self, status: int, reason: str) -> None:
        self.exit_status = status
        self.exit_reason = reason
        self.request_stop()
        self.sources.observe_acks()
        self.events.emit("reset" if self.reset_requested else "power_off", status=status, reason=reason)

    def system_reset(self, reason: str) -> None:
        """The guest asks for a warm reset: this boot ends; a run session boots the next."""
        self.reset_requested = True
        self.power_off(0, reason)

    def wait_for_interrupt(self) -> None:
        """PSCI CPU_SUSPEND (standby): the CPU idles as if it had executed WFI."""
        self.scheduler.wfi_requested = True
        self.request_stop()

    # --- PSCI CPU power management (armras.firmware.psci.PowerControl) ---------------
    def _vcpu_by_mpidr(self, mpidr: int) -> VCpu | None:
        return next((v for v in self.vcpus if v.mpidr == mpidr), None)

    def cpu_on(self, mpidr: int, entry: int, context_id: int) -> int:
        """Start the CPU `mpidr` at `entry` (EL1h, MMU off, x0 = context_id) when it next runs."""
        target = self._vcpu_by_mpidr(mpidr)
        if target is None:
            log.info("PSCI CPU_ON for MPIDR %#x: no such CPU on this %d-CPU board", mpidr, len(self.vcpus))
            return psci_codes.INVALID_PARAMETERS
        if target.power is Power.ON:
            return psci_codes.ALREADY_ON
        if target.power is Power.ON_PENDING:
            return psci_codes.ON_PENDING
        if not self.ram.contains(entry, 4) or entry % 4:
            log.info("PSCI CPU_ON for CPU %d: entry point %#x is not in RAM", target.index, entry)
            return psci_codes.INVALID_ADDRESS
        target.power, target.start = Power.ON_PENDING, (entry, context_id)
        target.waiting = target.sea_held = False
        self.sdei.reset_pe(target.index)          # a PE comes out of reset with SDEI masked
        target.serror, target.disr = None, 0
        log.info("PSCI CPU_ON: CPU %d (MPIDR %#x) starts at %#x", target.index, mpidr, entry)
        return psci_codes.SUCCESS

    def cpu_off(self) -> int:
        """The calling CPU powers down (the last one powers the board off)."""
        me = self.vcpus[self.current]
        if not any(v.power is not Power.OFF for v in self.vcpus if v is not me):
            self.power_off(0, "PSCI CPU_OFF of the last CPU")
            return psci_codes.SUCCESS
        me.power, me.waiting = Power.OFF, False
        if me.serror is not None:
            log.warning("CPU %d powered off with an SError pending (ESR %#010x): it is lost", me.index, me.serror)
            me.serror = None
        log.info("PSCI CPU_OFF: CPU %d is off", me.index)
        self.request_stop()
        return psci_codes.SUCCESS

    def affinity_info(self, mpidr: int) -> int:
        target = self._vcpu_by_mpidr(mpidr)
        return psci_codes.INVALID_PARAMETERS if target is None else target.power.value

    def _smccc_call(self, cpu: Cpu) -> None:
        args = cpu.xs(6)
        fid = args[0] & 0xFFFF_FFFF
        if is_sdei_call(fid) and args[0] >> 32 == 0:
            result = self.sdei.call(cpu, fid, args)
            if result is not None:
                cpu.set_x(0, result)
            self.sdei.after_call(cpu)
            return
        cpu.set_x(0, self.psci.call(*args[:4]))

    # --- SDEI dispatcher's view of the board (armras.firmware.sdei.SdeiBoard) -----------
    def current_cpu(self) -> int:
        return self.current

    def cpu_index_of(self, mpidr: int) -> int | None:
        v = self._vcpu_by_mpidr(mpidr)
        return None if v is None else v.index

    def valid_entry(self, cpu: Cpu, va: int) -> bool:
        """An SDEI entry/resume address: a virtual address of the client's that maps to RAM
        (TF-A plat_sdei_validate_entry_point translates it with AT S1E1R)."""
        pa = translate(cpu, self.mem, va)
        return pa is not None and self.ram.contains(pa, 4)

    def kick(self, index: int) -> None:
        """CPU `index` has an SDEI event to take: let the scheduler run it soon."""
        self.request_stop()

    def on_console(self, pattern: str, action: Callable[[re.Match[str]], None], description: str) -> None:
        """Run `action(match)` (once) when a console line matches `pattern`."""
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ArmrasError(f"bad console pattern {pattern!r}: {e}") from None
        fired = False

        def watch(line: str) -> None:
            nonlocal fired
            if fired:
                return
            m = regex.search(line)
            if m:
                fired = True
                self.defer(lambda: action(m), f"{description} (console matched {line!r})")

        self.console.watch(watch)

    # --- RAS --------------------------------------------------------------------------
    def report(self, estatus: bytes, *, notify: Notify | None = None, source_id: int | None = None,
               cpu: int | None = None) -> GhesSource:
        """Record a CPER in a source (by id, or the first of kind `notify`), then notify the guest
        as that source says (armras.ras.report). `cpu`: the CPU that takes an SEA or SDEI event."""
        source = self.ras.source(notify=notify, source_id=source_id)
        self.ras.report(source, estatus, cpu)
        if cper.estatus_severity(estatus) == cper.Severity.FATAL:
            # Firmware keeps a fatal error for the next boot's BERT (the OS panics on it).
            self.persistent.record_fatal(estatus)
        return source

    def record_error(self, source_id: int, estatus: bytes) -> None:
        """Write a CPER into a source's error status block, without notifying (refused if not acknowledged)."""
        self.sources.by_id(source_id).record(estatus)

    def inject_sea(self, pa: int, severity: cper.Severity = cper.Severity.RECOVERABLE,
                   cpu: int | None = None) -> GhesSource:
        """A memory-error CPER in the SEA source, and an SEA on `cpu` (default: the running CPU)."""
        self._check_ram_address(pa)
        return self.report(cper.memory_error_record(pa, severity), notify=Notify.SEA, cpu=cpu)

    def notify_gpio(self, estatus: bytes) -> GhesSource:
        """Record a CPER in the GPIO-notified source and raise the GED error event."""
        return self.report(estatus, notify=Notify.GPIO)

    def _notify_sea(self, spec: SourceSpec, cpu: int | None) -> None:
        """Raise an injected SEA on `cpu` (the CPU is stopped between slices).

        Hardware raises an SEA synchronously to the access that consumed the error, never
        while the OS is between an exception entry and saving ELR_EL1/SPSR_EL1 (its
        vectors touch no poisoned memory). An injection arrives from outside at an
        arbitrary instruction boundary, so it is taken at once only where a nested
        exception cannot destroy live exception state (see _sea_safe_at); otherwise the
        block hook holds it to the first such block start.
        """
        target = self.vcpu(cpu)
        if target.index != self.current:
            target.sea_held = True                 # taken when that CPU next runs
        elif self.sea_safe_at(self.cpu.pc):
            self.enter_sea(instruction=False)
        else:
            log.info("SEA held at %#x until the guest is out of its exception entry", self.cpu.pc)
            self.blocks.hold_sea(self.instructions + SEA_HOLD_LIMIT)

    def _check_cpu(self, spec: SourceSpec, cpu: int | None) -> None:
        self.vcpu(cpu)                            # raises if there is no such CPU, or it is off

    def _check_sdei(self, spec: SourceSpec, cpu: int | None) -> None:
        self.sdei.check_trigger(spec.event, self.vcpu(cpu).index)

    def _notify_sdei(self, spec: SourceSpec, cpu: int | None) -> None:
        """Firmware dispatches the source's SDEI event (taken before the CPU runs on)."""
        self.sdei.trigger(spec.event, self.vcpu(cpu).index)

    def _notify_gpio(self, spec: SourceSpec, cpu: int | None) -> None:
        """The GED error event: Linux's `hed` runs the GHES handler for GPIO-signal sources."""
        self.ged.raise_event(ACPI_GED_ERROR_EVT)
        self.events.emit("notify", kind="gpio", source=spec.source_id, intid=intid("ged"))

    def _notify_polled(self, spec: SourceSpec, cpu: int | None) -> None:
        log.info("error source %d is polled: the guest reads it within %d ms of guest time",
                 spec.source_id, spec.poll_interval_ms)

    def _notify_sei(self, spec: SourceSpec, cpu: int | None) -> None:
        """Firmware raises an SError alongside the record (HEST notification type 9, ARMv8 SEI);
        its AET grades the error as the record's severity does (AET_FOR_CPER_SEVERITY)."""
        block = self.sources.by_id(spec.source_id).block_address()
        severity = self.mem.read_u32(block + cper.ESTATUS_SEVERITY_OFFSET)
        self.inject_serror(AET_FOR_CPER_SEVERITY.get(severity, AET_UC), cpu)

    def inject_serror(self, aet: int, cpu: int | None = None) -> tuple[VCpu, bool]:
        """Make a physical SError with RAS syndrome `aet` (an AET_* of armras.arch.cpu)
        pending for `cpu` (default: the running CPU). Returns (that CPU, merged).

        It is taken at the CPU's next instruction boundary where PSTATE.A is clear
        (_deliver), at once if it is clear now. A pending SError is one pending state,
        not a queue: a second injection before the first is taken merges into it, and
        the exception then reports the more severe syndrome.
        """
        target = self.vcpu(cpu)
        esr = serror_syndrome(aet)
        merged = target.serror is not None
        if merged:
            assert target.serror is not None
            order = list(SERROR_AETS)            # most severe first
            kept = min(esr, target.serror, key=lambda e: order.index(serror_aet_name(e)))
            log.warning("CPU %d already has an SError pending (aet=%s); aet=%s merges into it (pending "
                        "SErrors are not queued): one SError with aet=%s will be taken", target.index,
                        serror_aet_name(target.serror), serror_aet_name(esr), serror_aet_name(kept))
            esr = kept
        target.serror = esr
        if target.index == self.current and self.cpu.serror_masked:
            log.info("SError (ESR %#010x) pending on CPU %d until the guest clears PSTATE.A", esr, target.index)
        return target, merged

    def watch_esb(self, on: bool) -> None:
        """While the running CPU has a masked SError pending, an ESB it executes defers it."""
        self.esb.enable(on)

    def _fetch_insn(self, va: int) -> int | None:
        pa = translate(self.cpu, self.mem, va)
        return self.mem.read_u32(pa) if pa is not None and self.mem.contains(pa, 4) else None

    def _on_esb(self, pc: int) -> None:
        """The running CPU executes ESB: a pending SError that PSTATE.A masks is deferred into
        DISR_EL1 (A = 1 and the syndrome) and is no longer pending (Arm ARM D19 DISR_EL1)."""
        v = self.vcpus[self.current]
        if v.serror is None or not self.cpu.serror_masked:
            return
        esr, v.serror = v.serror, None
        self.sysregs.disr = DISR_A | (esr & DISR_SYNDROME_MASK)
        v.serrors_deferred += 1
        self.events.emit("notify", kind="serror", cpu=self.current, esr=f"{esr:#010x}", el=self.cpu.current_el,
                         pc=f"{pc:#x}", deferred_by_esb=True, disr=f"{self.sysregs.disr:#010x}")
        log.info("SError (ESR %#010x) deferred by ESB at %#x on CPU %d: DISR_EL1 = %#010x", esr, pc,
                 self.current, self.sysregs.disr)
        self.request_stop()          # the run loop stops watching

    def take_serror(self, v: VCpu) -> None:
        """The running CPU takes its pending SError at its PC (preferred return address)."""
        esr, v.serror = v.serror, None
        assert esr is not None
        v.serrors_taken += 1
        self.events.emit("notify", kind="serror", cpu=self.current, esr=f"{esr:#010x}", el=self.cpu.current_el,
                         pc=f"{self.cpu.pc:#x}")
        log.info("SError: ESR %#010x (aet=%s) taken by CPU %d from EL%d at %#x", esr, serror_aet_name(esr),
                 self.current, self.cpu.current_el, self.cpu.pc)
        self.cpu.take_exception(VECTOR_SERROR, elr=self.cpu.pc, esr=esr)

    def vcpu(self, index: int | None) -> VCpu:
        """CPU `index` (None: the running one), checked: injections name CPUs from outside."""
        if index is None:
            return self.vcpus[self.current]
        if not 0 <= index < len(self.vcpus):
            raise ArmrasError(f"cpu={index}: the board has {len(self.vcpus)} CPU(s), 0-{len(self.vcpus) - 1}")
        v = self.vcpus[index]
        if v.power is not Power.ON:
            raise ArmrasError(f"cpu={index}: CPU {index} is {v.power.name.lower().replace('_', ' ')}")
        return v

    def sea_safe_at(self, pc: int) -> bool:
        """May an injected SEA be taken at `pc` (a block start)? Twin of _native.c armras_sea_safe."""
        pstate = self.cpu.pstate
        if (pstate >> PSTATE_EL_SHIFT) & 3 == 0 or not pstate & PSTATE_I:
            return True      # EL0, or EL1 with IRQs unmasked: exception state already saved
        if self.cpu.exceptions_taken == 0:
            return True      # nothing was ever entered, so nothing is half-saved
        elr, spsr = self.cpu.regs.read(UC_ARM64_REG_ELR_EL1), self.cpu.sysreg(SPSR_EL1)
        return pc == elr and (spsr ^ pstate) & (PSTATE_EL_MASK | PSTATE_SP) == 0   # just returned

    def take_held_sea(self) -> None:
        """The block hook stopped the CPU for a held SEA (a safe point, or the hold limit)."""
        if not self.sea_safe_at(self.cpu.pc):
            log.warning("injected SEA held for %d instructions without reaching a point where the guest "
                        "has saved its exception state; taking it at %#x", SEA_HOLD_LIMIT, self.cpu.pc)
        self.enter_sea(instruction=False)

    def enter_sea(self, *, instruction: bool, bus_error: tuple[bool, int | None] | None = None) -> None:
        """Take a synchronous external abort on the running CPU at its PC.

        Injected SEAs and poisoned pages get KVM's syndrome (FnV: no FAR); a genuine bus
        error, `bus_error=(write, far)`, the architectural one with FAR and WnR.
        """
        el = self.cpu.current_el
        far = None
        if bus_error is None:
            esr = sea_syndrome(el, instruction=instruction)
        else:
            write, far = bus_error
            esr = bus_error_syndrome(el, instruction=instruction, write=write, far_valid=far is not None)
        self.vcpus[self.current].seas_taken += 1
        pc = self.cpu.pc
        if self.events.enabled:
            self.events.emit("notify", kind="sea", cpu=self.current, esr=f"{esr:#010x}", far=hex_or_none(far), el=el,
                             pc=f"{pc:#x}")
        if log.isEnabledFor(logging.INFO):
            log.info("SEA: ESR %#010x FAR %s taken by CPU %d from EL%d at %#x", esr,
                     f"{far:#x}" if far is not None else "-", self.current, el, pc)
        self.cpu.take_exception(VECTOR_SYNC, elr=pc, esr=esr, far=far)

    def _check_ram_address(self, pa: int) -> None:
        if not self.ram.contains(pa):
            raise GuestAddressError(f"physical address {pa:#x} is outside guest RAM "
                                    f"({self.ram.base:#x}-{self.ram.end - 1:#x})")

    def poison(self, pa: int) -> None:
        """Take the 4 KiB page holding `pa` away from the guest (hardware-poisoned memory).

        The guest's next access to it raises an SEA with a memory-error CPER for the
        page, as KVM's SIGBUS BUS_MCEERR_AR path does. Only that page is unmapped.
        """
        self._check_ram_address(pa)
        page = pa & PAGE_MASK
        base, size = self.reserved_range
        if base <= page < base + size:
            raise ArmrasError(f"refusing to poison {pa:#x}: it is firmware-reserved memory (ACPI/GHES)")
        if page in self.poisoned:
            return
        self.uc.mem_unmap(page, PAGE_SIZE)
        self._hooks.append(self.uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._unmapped_cb,
                                            begin=page, end=page + PAGE_SIZE - 1))
        self.poisoned.add(page)
        log.info("poisoned page %#x", page)
        self.events.emit("poison", page=f"{page:#x}")

    def handle_bus_error(self, err: UcError) -> None:
        info, self._unmapped = self._unmapped, None
        if info is None:
            raise GuestFault(f"guest memory access failed at {self.cpu.pc:#x}: {err}")
        self.uc.context_restore(info.context)   # back to the faulting instruction, exactly
        page = info.address & PAGE_MASK
        fetch = err.errno in _FETCH_ERRORS
        if page in self.poisoned:
            source = self.ras.source(notify=Notify.SEA)
            if not source.acknowledged():
                raise GuestFault(
                    f"guest touched poisoned page {page:#x} at {self.cpu.pc:#x} while the SEA source still "
                    f"holds an unacknowledged record (read-ack {source.read_ack():#x}); the error cannot be "
                    "reported (QEMU/KVM aborts the VM here)")
            source.record(cper.memory_error_record(page))
            log.info("guest touched poisoned page %#x", page)
        else:
            what = {UC_ERR_WRITE_PROT: "wrote to read-only flash at",
                    UC_ERR_FETCH_PROT: "fetched an instruction from a device at",
                    UC_ERR_READ_PROT: "read unreadable memory at"}.get(err.errno, "accessed unassigned physical address")
            self.warnings.warning(("bus error", err.errno), "guest %s %#x at %#x: synchronous external abort",
                                  what, info.address, self.cpu.pc)
            # A genuine bus error: the architectural syndrome, with the faulting virtual
            # address (the fetch's is the PC itself), as QEMU TCG reports it.
            far = self.cpu.pc if fetch else fault_address(self.cpu, self.mem, info.address)
            write = err.errno in (UC_ERR_WRITE_UNMAPPED, UC_ERR_WRITE_PROT)
            self.enter_sea(instruction=fetch, bus_error=(write, far))
            return
        self.enter_sea(instruction=fetch)

    # --- reports -----------------------------------------------------------------------
    def crash_report(self) -> str:
        """The last console lines, the running CPU's PC symbolized and disassembled, key registers."""
        return crash_report(self.console.recent, self.cpu, self.mem, self.symbols,
                            f"CPU {self.current}" if len(self.vcpus) > 1 else "CPU")
