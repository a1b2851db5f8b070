"""A PCIe hierarchy behind a generic ECAM host bridge: one root port, one endpoint, both with AER.

PCIe Base Specification 4.0: configuration space (7.5.1: type 0 and type 1 headers), the
PCI Express Capability (7.5.3) and the Advanced Error Reporting Extended Capability
(7.8.4). Config space is modelled as QEMU's hw/pci/pci.c does: bytes, a write mask and a
write-1-to-clear mask per byte, plus a sticky mask (RWS/RW1CS bits, which a hot reset
keeps). Every guest access is defined: a function that does not exist reads all-ones
(PCI "master abort") and ignores writes; any offset and size is decoded byte by byte.

Topology: the root port is device 1 of bus 0 (00:01.0, as QEMU's `-device
pcie-root-port,addr=1`); the endpoint is device 0 of the root port's secondary bus, which
the OS assigns (Linux: bus 1, so 01:00.0). Errors are injected with `Function.aer_error`,
which logs them in the function's AER registers as the spec's 6.2.5 flowchart says and
sends ERR_COR / ERR_NONFATAL / ERR_FATAL to the root port; the root port logs the message
in its Root Error Status / Error Source Identification registers and asserts INTA
(level) while a reported class is pending and enabled in the Root Error Command register.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from armras.devices import IrqSink

log = logging.getLogger(__name__)

CONFIG_SPACE_SIZE = 4096            # PCIe extended configuration space per function
ECAM_BUS_SHIFT = 20
ECAM_DEVFN_SHIFT = 12
DEVFN_MASK = 0xFF
REG_MASK = 0xFFF
ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF

# --- Type 0/1 common header (PCIe Base 4.0 7.5.1.1) ---
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09
PCI_CACHE_LINE_SIZE = 0x0C
PCI_HEADER_TYPE = 0x0E
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_LINE = 0x3C
PCI_INTERRUPT_PIN = 0x3D
HEADER_TYPE_NORMAL = 0x00
HEADER_TYPE_BRIDGE = 0x01
COMMAND_IO = 1 << 0
COMMAND_MEMORY = 1 << 1
COMMAND_MASTER = 1 << 2
COMMAND_PARITY = 1 << 6
COMMAND_SERR = 1 << 8
COMMAND_INTX_DISABLE = 1 << 10
STATUS_INTERRUPT = 1 << 3
STATUS_CAP_LIST = 1 << 4
STATUS_RW1C = 0xF900                 # parity, target/master aborts, signaled system error, detected parity
STATUS_SIGNALED_SYSTEM_ERROR = 1 << 14
INTX_PIN_INTA = 1

# --- Type 0 (7.5.1.2) ---
PCI_SUBSYSTEM_VENDOR_ID = 0x2C
PCI_SUBSYSTEM_ID = 0x2E

# --- Type 1 (7.5.1.3) ---
PCI_PRIMARY_BUS = 0x18
PCI_SECONDARY_BUS = 0x19
PCI_SUBORDINATE_BUS = 0x1A
PCI_IO_BASE = 0x1C
PCI_IO_LIMIT = 0x1D
PCI_SEC_STATUS = 0x1E
PCI_MEMORY_BASE = 0x20
PCI_MEMORY_LIMIT = 0x22
PCI_PREF_MEMORY_BASE = 0x24
PCI_PREF_MEMORY_LIMIT = 0x26
PCI_PREF_BASE_UPPER32 = 0x28
PCI_PREF_LIMIT_UPPER32 = 0x2C
PCI_IO_BASE_UPPER16 = 0x30
PCI_IO_LIMIT_UPPER16 = 0x32
PCI_BRIDGE_CONTROL = 0x3E
IO_RANGE_32BIT = 0x01
PREF_RANGE_64BIT = 0x01
BRIDGE_CTL_WRITABLE = 0x005F         # parity response, SERR#, ISA, VGA, VGA 16-bit, secondary bus reset
BRIDGE_CTL_BUS_RESET = 1 << 6

# --- PCI Express Capability (7.5.3), at PCIE_CAP in both functions ---
PCIE_CAP = 0x40
PCIE_CAP_SIZE = 0x3C                 # through Slot Status 2 (what a CPER PCIe section carries)
CAP_ID_EXP = 0x10
EXP_FLAGS = 0x02
EXP_DEVCAP = 0x04
EXP_DEVCTL = 0x08
EXP_DEVSTA = 0x0A
EXP_LNKCAP = 0x0C
EXP_LNKCTL = 0x10
EXP_LNKSTA = 0x12
EXP_RTCTL = 0x1C
EXP_RTSTA = 0x20
EXP_LNKCAP2 = 0x2C
EXP_LNKCTL2 = 0x30
EXP_FLAGS_VERSION_2 = 0x2
EXP_TYPE_SHIFT = 4
DEVCAP_ROLE_BASED_ERROR_REPORTING = 1 << 15
DEVCTL_CERE = 1 << 0                 # correctable error reporting enable
DEVCTL_NFERE = 1 << 1
DEVCTL_FERE = 1 << 2
DEVCTL_RELAXED_ORDERING = 1 << 4
DEVCTL_NO_SNOOP = 1 << 11
DEVCTL_READRQ_512 = 0x2 << 12
DEVCTL_WRITABLE = 0x78FF             # error enables, URRE, RO, MPS, no snoop, MRRS
DEVSTA_CED = 1 << 0
DEVSTA_NFED = 1 << 1
DEVSTA_FED = 1 << 2
DEVSTA_URD = 1 << 3
LNK_SPEED_2_5GT = 0x1
LNK_WIDTH_X1 = 0x1 << 4
LNKCAP_DLLLARC = 1 << 20             # data link layer link active reporting capable
LNKCAP_PORT_SHIFT = 24
LNKCTL_WRITABLE = 0x00DB             # ASPM control, RCB, link disable, common clock, extended synch
LNKSTA_DLLLA = 1 << 13
LNKCAP2_SPEED_2_5GT = 1 << 1         # Supported Link Speeds Vector bit 0
RTCTL_WRITABLE = 0x000F              # SERR on correctable/non-fatal/fatal, PME interrupt enable
RTSTA_PME = 1 << 16


class PortType(enum.IntEnum):
    """Device/Port Type of the PCI Express Capabilities register (7.5.3.2)."""

    ENDPOINT = 0x0
    ROOT_PORT = 0x4


# --- Advanced Error Reporting Extended Capability (7.8.4), at AER_CAP in both functions ---
AER_CAP = 0x100
EXT_CAP_ID_ERR = 0x0001
AER_CAP_VERSION = 2
AER_UNCOR_STATUS = 0x04
AER_UNCOR_MASK = 0x08
AER_UNCOR_SEVER = 0x0C
AER_COR_STATUS = 0x10
AER_COR_MASK = 0x14
AER_CAP_CTRL = 0x18
AER_HEADER_LOG = 0x1C
AER_HEADER_LOG_DWORDS = 4
AER_ROOT_COMMAND = 0x2C
AER_ROOT_STATUS = 0x30
AER_ERROR_SOURCE = 0x34
AER_REGS_SIZE = 0x38                 # through Error Source Identification (Linux aer_capability_regs)
AER_CAP_SIZE = 0x48                  # with the TLP Prefix Log (reserved here)
# Uncorrectable error status bits (7.8.4.2).
UNCOR_DLP = 1 << 4                   # Data Link Protocol Error
UNCOR_SURPDN = 1 << 5                # Surprise Down
UNCOR_POISON_TLP = 1 << 12
UNCOR_FCP = 1 << 13
UNCOR_COMP_TIME = 1 << 14            # Completion Timeout
UNCOR_COMP_ABORT = 1 << 15
UNCOR_UNX_COMP = 1 << 16
UNCOR_RX_OVER = 1 << 17
UNCOR_MALF_TLP = 1 << 18
UNCOR_ECRC = 1 << 19
UNCOR_UNSUP = 1 << 20
UNCOR_IMPLEMENTED = 0x07FF_F030      # bits 4, 5 and 12..26
UNCOR_SEVER_DEFAULT = 0x0046_2030    # DLP, SurpDn, FCP, RxOF, MalfTLP fatal (7.8.4.4)
UNCOR_WITH_HEADER_LOG = (UNCOR_POISON_TLP | UNCOR_COMP_ABORT | UNCOR_UNX_COMP | UNCOR_MALF_TLP
                         | UNCOR_ECRC | UNCOR_UNSUP)
# Correctable error status bits (7.8.4.5).
COR_RCVR = 1 << 0                    # Receiver Error
COR_BAD_TLP = 1 << 6
COR_BAD_DLLP = 1 << 7
COR_REP_ROLL = 1 << 8
COR_REP_TIMER = 1 << 12
COR_ADV_NFAT = 1 << 13               # Advisory Non-Fatal
COR_INTERNAL = 1 << 14
COR_LOG_OVER = 1 << 15
COR_IMPLEMENTED = 0xF1C1
COR_MASK_DEFAULT = COR_ADV_NFAT      # 7.8.4.6: Advisory Non-Fatal masked by default
CAP_CTRL_FEP_MASK = 0x1F             # First Error Pointer (RO, sticky)
ROOT_CMD_COR_EN = 1 << 0
ROOT_CMD_NONFATAL_EN = 1 << 1
ROOT_CMD_FATAL_EN = 1 << 2
ROOT_CMD_WRITABLE = 0x7
# Root Error Status (7.8.4.10).
ROOT_ERR_COR_RCV = 1 << 0
ROOT_ERR_MULTI_COR_RCV = 1 << 1
ROOT_ERR_UNCOR_RCV = 1 << 2
ROOT_ERR_MULTI_UNCOR_RCV = 1 << 3
ROOT_ERR_FIRST_FATAL = 1 << 4
ROOT_ERR_NONFATAL_RCV = 1 << 5
ROOT_ERR_FATAL_RCV = 1 << 6
ROOT_ERR_RW1C = 0x7F

# QEMU's Red Hat device ids (docs/specs/pci-ids.rst): generic PCIe root port, PCI test device.
VENDOR_REDHAT = 0x1B36
DEVICE_ROOT_PORT = 0x000C
DEVICE_TEST = 0x0005
SUBSYSTEM_VENDOR_QEMU = 0x1AF4
SUBSYSTEM_QEMU = 0x1100
CLASS_PCI_BRIDGE = 0x060400
CLASS_UNCLASSIFIED_OTHER = 0x00FF00

ROOT_PORT_DEVFN = 1 << 3             # 00:01.0
ENDPOINT_DEVFN = 0                   # device 0 of the root port's secondary bus


class Message(enum.Enum):
    """Error messages a function sends upstream (PCIe Base 4.0 6.2.3.2)."""

    ERR_COR = "ERR_COR"
    ERR_NONFATAL = "ERR_NONFATAL"
    ERR_FATAL = "ERR_FATAL"


def bdf(bus: int, devfn: int) -> int:
    """A Requester ID: bus in bits 15:8, device/function in 7:0."""
    return (bus << 8) | devfn


def format_bdf(requester_id: int) -> str:
    return f"{requester_id >> 8:02x}:{(requester_id >> 3) & 0x1F:02x}.{requester_id & 7}"


class ConfigSpace:
    """4 KiB of config space with per-byte write, write-1-to-clear and sticky masks."""

    def __init__(self) -> None:
        self.data = bytearray(CONFIG_SPACE_SIZE)
        self.wmask = bytearray(CONFIG_SPACE_SIZE)
        self.w1cmask = bytearray(CONFIG_SPACE_SIZE)
        self.sticky = bytearray(CONFIG_SPACE_SIZE)
        self._defaults = bytes(CONFIG_SPACE_SIZE)

    def get(self, reg: int, size: int) -> int:
        return int.from_bytes(self.data[reg:reg + size], "little")

    def set(self, reg: int, size: int, value: int) -> None:
        """Set bits as the hardware does (no masks)."""
        self.data[reg:reg + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def mask(self, reg: int, size: int, *, write: int = 0, w1c: int = 0, sticky: int = 0) -> None:
        self.wmask[reg:reg + size] = write.to_bytes(size, "little")
        self.w1cmask[reg:reg + size] = w1c.to_bytes(size, "little")
        self.sticky[reg:reg + size] = sticky.to_bytes(size, "little")

    def seal(self) -> None:
        """Take the current bytes as the reset values."""
        self._defaults = bytes(self.data)

    def guest_write_byte(self, reg: int, value: int) -> None:
        old = self.data[reg]
        new = (old & ~self.wmask[reg]) | (value & self.wmask[reg])
        self.data[reg] = new & ~(value & self.w1cmask[reg]) & 0xFF

    def hot_reset(self) -> None:
        """Non-sticky bits back to their reset values; sticky (RWS/RW1CS/ROS) bits kept."""
        for reg in range(CONFIG_SPACE_SIZE):
            keep = self.sticky[reg]
            if keep != 0xFF:
                self.data[reg] = (self.data[reg] & keep) | (self._defaults[reg] & ~keep & 0xFF)


@dataclass(frozen=True)
class AerLog:
    """What one injected error did: the messages sent and the function's registers after it."""

    messages: tuple[Message, ...]
    unreported: tuple[Message, ...]         # signalled but disabled in Device Control


class Function:
    """A PCIe function with the PCI Express Capability and the AER Extended Capability."""

    def __init__(self, name: str, vendor: int, device: int, class_code: int, header_type: int,
                 port_type: PortType) -> None:
        self.name = name
        self.port_type = port_type
        self.cfg = c = ConfigSpace()
        c.set(PCI_VENDOR_ID, 2, vendor)
        c.set(PCI_DEVICE_ID, 2, device)
        c.set(PCI_REVISION_ID, 1, 0)
        c.set(PCI_CLASS_PROG, 3, class_code)
        c.set(PCI_HEADER_TYPE, 1, header_type)
        c.set(PCI_STATUS, 2, STATUS_CAP_LIST)
        c.mask(PCI_STATUS, 2, w1c=STATUS_RW1C)
        c.mask(PCI_CACHE_LINE_SIZE, 1, write=0xFF)
        c.set(PCI_CAPABILITY_LIST, 1, PCIE_CAP)
        c.mask(PCI_INTERRUPT_LINE, 1, write=0xFF)
        # PCI Express Capability: no slot, x1 at 2.5 GT/s, link up.
        e = PCIE_CAP
        c.set(e, 1, CAP_ID_EXP)
        c.set(e + EXP_FLAGS, 2, EXP_FLAGS_VERSION_2 | (int(port_type) << EXP_TYPE_SHIFT))
        c.set(e + EXP_DEVCAP, 4, DEVCAP_ROLE_BASED_ERROR_REPORTING)
        c.set(e + EXP_DEVCTL, 2, DEVCTL_RELAXED_ORDERING | DEVCTL_NO_SNOOP | DEVCTL_READRQ_512)
        c.mask(e + EXP_DEVCTL, 2, write=DEVCTL_WRITABLE)
        c.mask(e + EXP_DEVSTA, 2, w1c=DEVSTA_CED | DEVSTA_NFED | DEVSTA_FED | DEVSTA_URD)
        c.set(e + EXP_LNKCAP, 4, LNK_SPEED_2_5GT | LNK_WIDTH_X1)
        c.mask(e + EXP_LNKCTL, 2, write=LNKCTL_WRITABLE)
        c.set(e + EXP_LNKSTA, 2, LNK_SPEED_2_5GT | LNK_WIDTH_X1)
        c.set(e + EXP_LNKCAP2, 4, LNKCAP2_SPEED_2_5GT)
        c.set(e + EXP_LNKCTL2, 2, LNK_SPEED_2_5GT)
        # AER: header, then the sticky status/mask/severity/control/header-log registers.
        a = AER_CAP
        c.set(a, 4, EXT_CAP_ID_ERR | (AER_CAP_VERSION << 16))
        c.mask(a + AER_UNCOR_STATUS, 4, w1c=UNCOR_IMPLEMENTED, sticky=0xFFFF_FFFF)
        c.mask(a + AER_UNCOR_MASK, 4, write=UNCOR_IMPLEMENTED, sticky=0xFFFF_FFFF)
        c.set(a + AER_UNCOR_SEVER, 4, UNCOR_SEVER_DEFAULT)
        c.mask(a + AER_UNCOR_SEVER, 4, write=UNCOR_IMPLEMENTED, sticky=0xFFFF_FFFF)
        c.mask(a + AER_COR_STATUS, 4, w1c=COR_IMPLEMENTED, sticky=0xFFFF_FFFF)
        c.set(a + AER_COR_MASK, 4, COR_MASK_DEFAULT)
        c.mask(a + AER_COR_MASK, 4, write=COR_IMPLEMENTED, sticky=0xFFFF_FFFF)
        c.mask(a + AER_CAP_CTRL, 4, sticky=0xFFFF_FFFF)
        c.mask(a + AER_HEADER_LOG, 4 * AER_HEADER_LOG_DWORDS, sticky=(1 << 128) - 1)

    # --- guest access -------------------------------------------------------------------
    def read_byte(self, reg: int) -> int:
        return self.cfg.data[reg]

    def write_bytes(self, reg: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            self.cfg.guest_write_byte(reg + i, byte)
        self.after_write(reg, len(data))

    def after_write(self, reg: int, size: int) -> None:
        """Side effects of a guest write to [reg, reg + size)."""

    # --- registers ------------------------------------------------------------------------
    def reg(self, offset: int, size: int = 4) -> int:
        return self.cfg.get(offset, size)

    def aer_regs(self) -> bytes:
        """AER capability bytes 0x00-0x37, the layout of Linux's struct aer_capability_regs."""
        return bytes(self.cfg.data[AER_CAP:AER_CAP + AER_REGS_SIZE])

    def pcie_cap(self) -> bytes:
        return bytes(self.cfg.data[PCIE_CAP:PCIE_CAP + PCIE_CAP_SIZE])

    def hot_reset(self) -> None:
        self.cfg.hot_reset()

    # --- errors (PCIe Base 4.0 6.2.5, Figure 6-2) --------------------------------------
    def aer_error(self, cor: int = 0, uncor: int = 0,
                  header_log: tuple[int, int, int, int] | None = None) -> AerLog:
        """Log errors in this function's AER registers; returns the messages it signals."""
        c, a, e = self.cfg, AER_CAP, PCIE_CAP
        cor &= COR_IMPLEMENTED
        uncor &= UNCOR_IMPLEMENTED
        signalled: list[Message] = []
        devsta = 0
        if cor:
            c.set(a + AER_COR_STATUS, 4, c.get(a + AER_COR_STATUS, 4) | cor)
            if cor & ~c.get(a + AER_COR_MASK, 4):
                devsta |= DEVSTA_CED
                signalled.append(Message.ERR_COR)
        if uncor:
            old_status = c.get(a + AER_UNCOR_STATUS, 4)
            mask = c.get(a + AER_UNCOR_MASK, 4)
            severity = c.get(a + AER_UNCOR_SEVER, 4)
            c.set(a + AER_UNCOR_STATUS, 4, old_status | uncor)
            unmasked = uncor & ~mask
            if unmasked and not old_status & ~mask:
                # First Error Pointer and Header Log record the first unmasked error.
                first = (unmasked & -unmasked).bit_length() - 1
                ctrl = c.get(a + AER_CAP_CTRL, 4) & ~CAP_CTRL_FEP_MASK
                c.set(a + AER_CAP_CTRL, 4, ctrl | first)
                log_dwords = header_log if header_log is not None else (0, 0, 0, 0)
                for i, dword in enumerate(log_dwords):
                    c.set(a + AER_HEADER_LOG + 4 * i, 4, dword)
            if unmasked & severity:
                devsta |= DEVSTA_FED
                signalled.append(Message.ERR_FATAL)
            if unmasked & ~severity:
                devsta |= DEVSTA_NFED
                signalled.append(Message.ERR_NONFATAL)
        c.set(e + EXP_DEVSTA, 2, c.get(e + EXP_DEVSTA, 2) | devsta)
        devctl = c.get(e + EXP_DEVCTL, 2)
        serr = bool(c.get(PCI_COMMAND, 2) & COMMAND_SERR)
        enabled = {Message.ERR_COR: bool(devctl & DEVCTL_CERE),
                   Message.ERR_NONFATAL: bool(devctl & DEVCTL_NFERE) or serr,
                   Message.ERR_FATAL: bool(devctl & DEVCTL_FERE) or serr}
        sent = tuple(m for m in signalled if enabled[m])
        if any(m is not Message.ERR_COR for m in sent) and serr:
            c.set(PCI_STATUS, 2, c.get(PCI_STATUS, 2) | STATUS_SIGNALED_SYSTEM_ERROR)
        return AerLog(sent, tuple(m for m in signalled if not enabled[m]))


class Endpoint(Function):
    """A type 0 PCIe endpoint with no BARs and no interrupt pin (QEMU's PCI test device id)."""

    def __init__(self, name: str = "endpoint") -> None:
        super().__init__(name, VENDOR_REDHAT, DEVICE_TEST, CLASS_UNCLASSIFIED_OTHER, HEADER_TYPE_NORMAL,
                         PortType.ENDPOINT)
        c = self.cfg
        c.mask(PCI_COMMAND, 2, write=COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY | COMMAND_SERR
               | COMMAND_INTX_DISABLE)
        c.set(PCI_SUBSYSTEM_VENDOR_ID, 2, SUBSYSTEM_VENDOR_QEMU)
        c.set(PCI_SUBSYSTEM_ID, 2, SUBSYSTEM_QEMU)
        c.seal()


class RootPort(Function):
    """A type 1 PCIe root port with the AER root registers, INTA wired to `intid`."""

    def __init__(self, irq: IrqSink, intid: int, port_number: int = 1, name: str = "root_port") -> None:
        super().__init__(name, VENDOR_REDHAT, DEVICE_ROOT_PORT, CLASS_PCI_BRIDGE, HEADER_TYPE_BRIDGE,
                         PortType.ROOT_PORT)
        self._irq = irq
        self.intid = intid
        self.line = False
        self.downstream: Function | None = None
        c, e, a = self.cfg, PCIE_CAP, AER_CAP
        c.mask(PCI_COMMAND, 2, write=COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY
               | COMMAND_SERR | COMMAND_INTX_DISABLE)
        c.set(PCI_INTERRUPT_PIN, 1, INTX_PIN_INTA)
        c.mask(PCI_PRIMARY_BUS, 3, write=0xFF_FFFF)
        c.set(PCI_IO_BASE, 1, IO_RANGE_32BIT)
        c.set(PCI_IO_LIMIT, 1, IO_RANGE_32BIT)
        c.mask(PCI_IO_BASE, 2, write=0xF0F0)
        c.mask(PCI_SEC_STATUS, 2, w1c=STATUS_RW1C)
        c.mask(PCI_MEMORY_BASE, 4, write=0xFFF0_FFF0)
        c.set(PCI_PREF_MEMORY_BASE, 2, PREF_RANGE_64BIT)
        c.set(PCI_PREF_MEMORY_LIMIT, 2, PREF_RANGE_64BIT)
        c.mask(PCI_PREF_MEMORY_BASE, 4, write=0xFFF0_FFF0)
        c.mask(PCI_PREF_BASE_UPPER32, 8, write=ALL_ONES)
        c.mask(PCI_IO_BASE_UPPER16, 4, write=0xFFFF_FFFF)
        c.mask(PCI_BRIDGE_CONTROL, 2, write=BRIDGE_CTL_WRITABLE)
        c.set(e + EXP_LNKCAP, 4, c.get(e + EXP_LNKCAP, 4) | LNKCAP_DLLLARC | (port_number << LNKCAP_PORT_SHIFT))
        c.set(e + EXP_LNKSTA, 2, c.get(e + EXP_LNKSTA, 2) | LNKSTA_DLLLA)
        c.mask(e + EXP_RTCTL, 2, write=RTCTL_WRITABLE)
        c.mask(e + EXP_RTSTA, 4, w1c=RTSTA_PME)
        c.mask(a + AER_ROOT_COMMAND, 4, write=ROOT_CMD_WRITABLE)
        c.mask(a + AER_ROOT_STATUS, 4, w1c=ROOT_ERR_RW1C, sticky=0xFFFF_FFFF)
        c.mask(a + AER_ERROR_SOURCE, 4, sticky=0xFFFF_FFFF)
        c.seal()

    @property
    def secondary_bus(self) -> int:
        return self.cfg.data[PCI_SECONDARY_BUS]

    @property
    def subordinate_bus(self) -> int:
        return self.cfg.data[PCI_SUBORDINATE_BUS]

    def after_write(self, reg: int, size: int) -> None:
        end = reg + size
        if reg <= PCI_BRIDGE_CONTROL < end and self.cfg.data[PCI_BRIDGE_CONTROL] & BRIDGE_CTL_BUS_RESET:
            if self.downstream is not None:      # Secondary Bus Reset: a hot reset below the port
                log.debug("%s: secondary bus reset", self.name)
                self.downstream.hot_reset()
        self.update_irq()

    def receive(self, message: Message, requester_id: int) -> None:
        """Log an error message from `requester_id` (itself included) in the root error registers."""
        c, a = self.cfg, AER_CAP
        status = c.get(a + AER_ROOT_STATUS, 4)
        source = c.get(a + AER_ERROR_SOURCE, 4)
        if message is Message.ERR_COR:
            if status & ROOT_ERR_COR_RCV:
                status |= ROOT_ERR_MULTI_COR_RCV
            else:
                status |= ROOT_ERR_COR_RCV
                source = (source & 0xFFFF_0000) | requester_id
        else:
            if status & ROOT_ERR_UNCOR_RCV:
                status |= ROOT_ERR_MULTI_UNCOR_RCV
            else:
                status |= ROOT_ERR_UNCOR_RCV
                source = (source & 0xFFFF) | (requester_id << 16)
                if message is Message.ERR_FATAL:
                    status |= ROOT_ERR_FIRST_FATAL
            status |= ROOT_ERR_FATAL_RCV if message is Message.ERR_FATAL else ROOT_ERR_NONFATAL_RCV
        c.set(a + AER_ROOT_STATUS, 4, status)
        c.set(a + AER_ERROR_SOURCE, 4, source)
        self.update_irq()

    def interrupt_pending(self) -> bool:
        """7.8.4.9: an interrupt is signalled for each received class enabled in Root Error Command."""
        status = self.reg(AER_CAP + AER_ROOT_STATUS)
        command = self.reg(AER_CAP + AER_ROOT_COMMAND)
        return bool((status & ROOT_ERR_COR_RCV and command & ROOT_CMD_COR_EN)
                    or (status & ROOT_ERR_NONFATAL_RCV and command & ROOT_CMD_NONFATAL_EN)
                    or (status & ROOT_ERR_FATAL_RCV and command & ROOT_CMD_FATAL_EN))

    def update_irq(self) -> None:
        pending = self.interrupt_pending()
        status = self.reg(PCI_STATUS, 2)
        self.cfg.set(PCI_STATUS, 2, (status | STATUS_INTERRUPT) if pending else (status & ~STATUS_INTERRUPT))
        level = pending and not self.reg(PCI_COMMAND, 2) & COMMAND_INTX_DISABLE
        if level != self.line:
            self.line = level
            self._irq.set_level(self.intid, level)


class PcieHost:
    """The ECAM window of a generic host bridge (PCIe Base 4.0 7.2.2): bus/device/function/register
    from the offset, one root port on bus 0 and one endpoint below it."""

    def __init__(self, irq: IrqSink, root_port_intid: int, name: str = "pcie_ecam") -> None:
        self.name = name
        self.root_port = RootPort(irq, root_port_intid)
        self.endpoint = Endpoint()
        self.root_port.downstream = self.endpoint

    def function(self, bus: int, devfn: int) -> Function | None:
        """The function a type 0/1 config request to bus/devfn reaches, or None (master abort)."""
        if bus == 0:
            return self.root_port if devfn == ROOT_PORT_DEVFN else None
        rp = self.root_port
        if bus == rp.secondary_bus and devfn == ENDPOINT_DEVFN:
            return self.endpoint
        return None

    def requester_id(self, fn: Function) -> int | None:
        """The function's bus/device/function as configured now (None: the endpoint's bus is unassigned)."""
        if fn is self.root_port:
            return bdf(0, ROOT_PORT_DEVFN)
        bus = self.root_port.secondary_bus
        return bdf(bus, ENDPOINT_DEVFN) if bus != 0 else None

    def find(self, requester_id: int) -> Function | None:
        return self.function(requester_id >> 8, requester_id & DEVFN_MASK)

    def functions(self) -> list[tuple[int | None, Function]]:
        return [(self.requester_id(f), f) for f in (self.root_port, self.endpoint)]

    # --- MMIO ---------------------------------------------------------------------------
    def _decode(self, offset: int) -> tuple[Function | None, int]:
        fn = self.function(offset >> ECAM_BUS_SHIFT, (offset >> ECAM_DEVFN_SHIFT) & DEVFN_MASK)
        return fn, offset & REG_MASK

    def read(self, offset: int, size: int) -> int:
        fn, reg = self._decode(offset)
        if reg + size <= CONFIG_SPACE_SIZE:     # within one function's config space
            return fn.cfg.get(reg, size) if fn is not None else ALL_ONES & ((1 << (8 * size)) - 1)
        value = 0                   # an access that straddles functions: byte by byte
        for i in range(size):
            f, r = self._decode(offset + i)
            value |= (f.read_byte(r) if f is not None else 0xFF) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        fn, reg = self._decode(offset)
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        if fn is not None and reg + size <= CONFIG_SPACE_SIZE:
            fn.write_bytes(reg, data)
            return
        for i, byte in enumerate(data):
            f, r = self._decode(offset + i)
            if f is not None:
                f.write_bytes(r, bytes([byte]))

    # --- error injection ----------------------------------------------------------------
    def inject_aer(self, requester_id: int, cor: int = 0, uncor: int = 0,
                   header_log: tuple[int, int, int, int] | None = None) -> AerLog:
        """An error detected by function `requester_id`: logged in its AER registers, its messages
        delivered to the root port (the root port's own errors included)."""
        fn = self.find(requester_id)
        if fn is None:
            raise LookupError(f"no PCIe function at {format_bdf(requester_id)}")
        result = fn.aer_error(cor, uncor, header_log)
        for message in result.messages:
            self.root_port.receive(message, requester_id)
        return result
