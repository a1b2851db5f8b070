"""A PCIe hierarchy behind a generic ECAM host bridge: two root ports, an endpoint and a switch, all with AER.

PCIe Base Specification 4.0: configuration space (7.5.1: type 0 and type 1 headers), the
PCI Express Capability (7.5.3) and the Advanced Error Reporting Extended Capability
(7.8.4). Config space is modelled as QEMU's hw/pci/pci.c does: bytes, a write mask and a
write-1-to-clear mask per byte, plus a sticky mask (RWS/RW1CS bits, which a hot reset
keeps). Every guest access is defined: a function that does not exist reads all-ones
(PCI "master abort") and ignores writes; any offset and size is decoded byte by byte.

Topology: the root port is device 1 of bus 0 (00:01.0, as QEMU's `-device
pcie-root-port,addr=1`); the endpoint is device 0 of the root port's secondary bus, which
the OS assigns (Linux: bus 1, so 01:00.0). A second root port, 00:02.0, has a PCIe switch
below it, as QEMU's `-device pcie-root-port,addr=2 -device x3130-upstream -device
xio3130-downstream`: the switch's upstream port is 02:00.0 (104c:8232) and its downstream
port 03:00.0 (104c:8233), with nothing below it. Every port is a type 1 function that Linux's
`pcieport` driver binds, so an error at the switch is recoverable (drivers/pci/pcie/err.c).
A bridge's Secondary Bus Reset (Bridge Control bit 6) hot-resets every function below it.

Errors are injected with `Function.aer_error`, which logs them in the function's AER
registers as the spec's 6.2.5 flowchart says and sends ERR_COR / ERR_NONFATAL / ERR_FATAL
up to the root port (a switch port forwards them from its secondary side only with SERR#
Enable); the root port logs the message in its Root Error Status / Error Source
Identification registers and, while a reported class is pending and enabled in the Root
Error Command register, asserts INTA (level) or, with MSI enabled, sends one MSI (the
MSI Capability, PCI Local Bus 3.0 6.8.1) on the condition's rising edge.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

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
BRIDGE_CTL_SERR = 1 << 1            # SERR# Enable: forward ERR_* from the secondary side
BRIDGE_CTL_BUS_RESET = 1 << 6
SEC_STATUS_RECEIVED_SYSTEM_ERROR = 1 << 14

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
EXP_NEXT = 0x01                      # the capability's Next Capability Pointer
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
    UPSTREAM = 0x5                   # upstream port of a switch
    DOWNSTREAM = 0x6                 # downstream port of a switch


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

# --- MSI Capability (PCI Local Bus 3.0 6.8.1; PCIe Base 4.0 7.7.1), at MSI_CAP in the root ports ---
MSI_CAP = 0x80
CAP_ID_MSI = 0x05
MSI_FLAGS = 0x02                     # Message Control
MSI_ADDRESS_LO = 0x04
MSI_ADDRESS_HI = 0x08                # 64-bit capable
MSI_DATA = 0x0C
MSI_FLAGS_ENABLE = 1 << 0
MSI_FLAGS_QSIZE_MASK = 0x7 << 4      # Multiple Message Enable (1 vector: only 0 meaningful)
MSI_FLAGS_64BIT = 1 << 7
MSI_ADDRESS_LO_MASK = 0xFFFF_FFFC    # DWORD aligned

# QEMU's Red Hat device ids (docs/specs/pci-ids.rst): generic PCIe root port, PCI test device.
VENDOR_REDHAT = 0x1B36
DEVICE_ROOT_PORT = 0x000C
DEVICE_TEST = 0x0005
SUBSYSTEM_VENDOR_QEMU = 0x1AF4
SUBSYSTEM_QEMU = 0x1100
CLASS_PCI_BRIDGE = 0x060400
CLASS_UNCLASSIFIED_OTHER = 0x00FF00
# QEMU's TI XIO3130 switch ports (hw/pci-bridge/xio3130_upstream.c, xio3130_downstream.c).
VENDOR_TI = 0x104C
DEVICE_XIO3130_UPSTREAM = 0x8232
DEVICE_XIO3130_DOWNSTREAM = 0x8233
XIO3130_REVISION = 0x02

ROOT_PORT_DEVFN = 1 << 3             # 00:01.0
SWITCH_ROOT_PORT_DEVFN = 2 << 3      # 00:02.0, the root port above the switch
ENDPOINT_DEVFN = 0                   # device 0 of the root port's secondary bus
PORT_DEVFN = 0                       # a switch port: device 0 of its bus


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
    blocked_at: str | None = None           # the switch port that did not forward them (SERR# Enable clear)


class Function:
    """A PCIe function with the PCI Express Capability and the AER Extended Capability."""

    def __init__(self, name: str, vendor: int, device: int, class_code: int, header_type: int,
                 port_type: PortType, revision: int = 0) -> None:
        self.name = name
        self.port_type = port_type
        self.parent: Bridge | None = None    # the port above (None: on the root bus)
        self.devfn = 0                       # device/function on its bus, set when attached
        self.cfg = c = ConfigSpace()
        c.set(PCI_VENDOR_ID, 2, vendor)
        c.set(PCI_DEVICE_ID, 2, device)
        c.set(PCI_REVISION_ID, 1, revision)
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


MsiSink = Callable[[int, int], None]     # (address, data): a function's MSI memory write


class Bridge(Function):
    """A type 1 PCIe port (root port or switch port): bus numbers, windows, Bridge Control
    (PCIe Base 4.0 7.5.1.3) and the functions on its secondary bus (`children`, by devfn)."""

    def __init__(self, name: str, vendor: int, device: int, port_type: PortType, *, revision: int = 0,
                 port_number: int = 0, link_active_reporting: bool = False, msi_capable: bool = False) -> None:
        super().__init__(name, vendor, device, CLASS_PCI_BRIDGE, HEADER_TYPE_BRIDGE, port_type, revision)
        self.children: dict[int, Function] = {}
        self._in_reset = False
        self.secondary_bus_resets = 0
        c, e = self.cfg, PCIE_CAP
        c.mask(PCI_COMMAND, 2, write=COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY
               | COMMAND_SERR | COMMAND_INTX_DISABLE)
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
        lnkcap = c.get(e + EXP_LNKCAP, 4) | (port_number << LNKCAP_PORT_SHIFT)
        if link_active_reporting:
            # The link below trains at once: DLLLA is set (and after a secondary bus reset stays set),
            # so Linux's waits for the link (pci_bridge_wait_for_secondary_bus) end on their first read.
            lnkcap |= LNKCAP_DLLLARC
            c.set(e + EXP_LNKSTA, 2, c.get(e + EXP_LNKSTA, 2) | LNKSTA_DLLLA)
        c.set(e + EXP_LNKCAP, 4, lnkcap)
        if msi_capable:
            # MSI after the PCI Express Capability: one vector, 64-bit address, no per-vector masking.
            m = MSI_CAP
            c.set(e + EXP_NEXT, 1, m)
            c.set(m, 1, CAP_ID_MSI)
            c.set(m + MSI_FLAGS, 2, MSI_FLAGS_64BIT)
            c.mask(m + MSI_FLAGS, 2, write=MSI_FLAGS_ENABLE | MSI_FLAGS_QSIZE_MASK)
            c.mask(m + MSI_ADDRESS_LO, 4, write=MSI_ADDRESS_LO_MASK)
            c.mask(m + MSI_ADDRESS_HI, 4, write=0xFFFF_FFFF)
            c.mask(m + MSI_DATA, 2, write=0xFFFF)

    @property
    def secondary_bus(self) -> int:
        return self.cfg.data[PCI_SECONDARY_BUS]

    @property
    def subordinate_bus(self) -> int:
        return self.cfg.data[PCI_SUBORDINATE_BUS]

    def attach(self, devfn: int, fn: Function) -> None:
        fn.parent, fn.devfn = self, devfn
        self.children[devfn] = fn

    def subtree(self) -> Iterator[Function]:
        """Every function below this port, each before those below it."""
        for _, fn in sorted(self.children.items()):
            yield fn
            if isinstance(fn, Bridge):
                yield from fn.subtree()

    def route(self, bus: int, devfn: int) -> Function | None:
        """The function a config request to bus/devfn reaching this port's primary side targets
        below it: type 1 to type 0 on the secondary bus, forwarded on within (secondary, subordinate]."""
        secondary = self.secondary_bus
        if secondary == 0:
            return None
        if bus == secondary:
            return self.children.get(devfn)
        if secondary < bus <= self.subordinate_bus:
            for child in self.children.values():
                if isinstance(child, Bridge) and (fn := child.route(bus, devfn)) is not None:
                    return fn
        return None

    def hot_reset(self) -> None:
        super().hot_reset()
        self._in_reset = False

    def after_write(self, reg: int, size: int) -> None:
        if reg <= PCI_BRIDGE_CONTROL < reg + size:
            asserted = bool(self.cfg.data[PCI_BRIDGE_CONTROL] & BRIDGE_CTL_BUS_RESET)
            if asserted and not self._in_reset:      # Secondary Bus Reset: a hot reset of all below
                log.debug("%s: secondary bus reset", self.name)
                self.secondary_bus_resets += 1
                for fn in self.subtree():
                    fn.hot_reset()
            self._in_reset = asserted

    def received_from_secondary(self, message: Message) -> bool:
        """An error message from below (7.5.1.3.7, 7.5.1.3.13): an uncorrectable one sets Received
        System Error in Secondary Status; a switch port forwards it upstream only with SERR# Enable."""
        if message is not Message.ERR_COR:
            status = self.reg(PCI_SEC_STATUS, 2)
            self.cfg.set(PCI_SEC_STATUS, 2, status | SEC_STATUS_RECEIVED_SYSTEM_ERROR)
        return bool(self.reg(PCI_BRIDGE_CONTROL, 2) & BRIDGE_CTL_SERR)


class SwitchUpstreamPort(Bridge):
    """The upstream port of a PCIe switch (QEMU's x3130-upstream ids). It has an MSI capability as
    QEMU's does and signals nothing through it: Linux 6.1's portdrv asks for an interrupt for the
    AER service of any port with AER (6.3+ only for root ports) and does not bind a port without one."""

    def __init__(self, name: str = "switch_upstream") -> None:
        super().__init__(name, VENDOR_TI, DEVICE_XIO3130_UPSTREAM, PortType.UPSTREAM, revision=XIO3130_REVISION,
                         msi_capable=True)
        self.cfg.seal()


class SwitchDownstreamPort(Bridge):
    """A downstream port of a PCIe switch (QEMU's xio3130-downstream ids), with an empty link below
    and, as the upstream port, an MSI capability it never signals through."""

    def __init__(self, port_number: int = 0, name: str = "switch_downstream") -> None:
        super().__init__(name, VENDOR_TI, DEVICE_XIO3130_DOWNSTREAM, PortType.DOWNSTREAM,
                         revision=XIO3130_REVISION, port_number=port_number, link_active_reporting=True,
                         msi_capable=True)
        self.cfg.seal()


class RootPort(Bridge):
    """A PCIe root port with the AER root registers and an MSI capability; INTA wired to `intid`.

    The AER interrupt (7.8.4.9) is INTA (level) while MSI is disabled; with MSI enabled (and Bus
    Master Enable set) each rising edge of it is one MSI memory write of Message Data to
    Message Address, handed to `msi` (the system's doorbell decoder, e.g. a GICv2m frame)."""

    def __init__(self, irq: IrqSink, intid: int, port_number: int = 1, name: str = "root_port",
                 msi: MsiSink | None = None) -> None:
        super().__init__(name, VENDOR_REDHAT, DEVICE_ROOT_PORT, PortType.ROOT_PORT, port_number=port_number,
                         link_active_reporting=True, msi_capable=msi is not None)
        self._irq = irq
        self._msi = msi
        self.intid = intid
        self.line = False
        self._pending = False
        self.msi_sent = 0                    # MSI writes issued (for tests and the control socket)
        c, e, a = self.cfg, PCIE_CAP, AER_CAP
        c.set(PCI_INTERRUPT_PIN, 1, INTX_PIN_INTA)
        c.mask(e + EXP_RTCTL, 2, write=RTCTL_WRITABLE)
        c.mask(e + EXP_RTSTA, 4, w1c=RTSTA_PME)
        c.mask(a + AER_ROOT_COMMAND, 4, write=ROOT_CMD_WRITABLE)
        c.mask(a + AER_ROOT_STATUS, 4, w1c=ROOT_ERR_RW1C, sticky=0xFFFF_FFFF)
        c.mask(a + AER_ERROR_SOURCE, 4, sticky=0xFFFF_FFFF)
        c.seal()

    def after_write(self, reg: int, size: int) -> None:
        super().after_write(reg, size)
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

    def msi_enabled(self) -> bool:
        return self._msi is not None and bool(self.reg(MSI_CAP + MSI_FLAGS, 2) & MSI_FLAGS_ENABLE)

    def update_irq(self) -> None:
        pending = self.interrupt_pending()
        status = self.reg(PCI_STATUS, 2)
        self.cfg.set(PCI_STATUS, 2, (status | STATUS_INTERRUPT) if pending else (status & ~STATUS_INTERRUPT))
        msi = self.msi_enabled()
        level = pending and not msi and not self.reg(PCI_COMMAND, 2) & COMMAND_INTX_DISABLE
        if level != self.line:
            self.line = level
            self._irq.set_level(self.intid, level)
        if msi and pending and not self._pending:
            self._send_msi()
        self._pending = pending

    def _send_msi(self) -> None:
        assert self._msi is not None
        if not self.reg(PCI_COMMAND, 2) & COMMAND_MASTER:
            log.info("%s: MSI not sent: Bus Master Enable is clear in the Command register", self.name)
            return
        m = MSI_CAP
        address = self.reg(m + MSI_ADDRESS_LO) | (self.reg(m + MSI_ADDRESS_HI) << 32)
        self.msi_sent += 1
        self._msi(address, self.reg(m + MSI_DATA, 2))


class PcieHost:
    """The ECAM window of a generic host bridge (PCIe Base 4.0 7.2.2): bus/device/function/register
    from the offset; root ports 00:01.0 (an endpoint below) and 00:02.0 (a switch below)."""

    def __init__(self, irq: IrqSink, root_port_intid: int, switch_root_port_intid: int,
                 msi: MsiSink | None = None, name: str = "pcie_ecam") -> None:
        self.name = name
        self.root_port = RootPort(irq, root_port_intid, port_number=1, msi=msi)
        self.endpoint = Endpoint()
        self.root_port.attach(ENDPOINT_DEVFN, self.endpoint)
        self.switch_root_port = RootPort(irq, switch_root_port_intid, port_number=2, name="switch_root_port",
                                         msi=msi)
        self.switch_upstream = SwitchUpstreamPort()
        self.switch_downstream = SwitchDownstreamPort()
        self.switch_root_port.attach(PORT_DEVFN, self.switch_upstream)
        self.switch_upstream.attach(PORT_DEVFN, self.switch_downstream)
        self.root_bus: dict[int, RootPort] = {}
        for devfn, port in ((ROOT_PORT_DEVFN, self.root_port), (SWITCH_ROOT_PORT_DEVFN, self.switch_root_port)):
            port.devfn = devfn
            self.root_bus[devfn] = port

    def function(self, bus: int, devfn: int) -> Function | None:
        """The function a type 0/1 config request to bus/devfn reaches, or None (master abort)."""
        if bus == 0:
            return self.root_bus.get(devfn)
        for port in self.root_bus.values():
            if (fn := port.route(bus, devfn)) is not None:
                return fn
        return None

    def requester_id(self, fn: Function) -> int | None:
        """The function's bus/device/function as configured now (None: its bus is not reachable yet)."""
        bus = 0 if fn.parent is None else fn.parent.secondary_bus
        if fn.parent is not None and bus == 0:
            return None
        rid = bdf(bus, fn.devfn)
        return rid if self.find(rid) is fn else None

    def find(self, requester_id: int) -> Function | None:
        return self.function(requester_id >> 8, requester_id & DEVFN_MASK)

    def functions(self) -> list[tuple[int | None, Function]]:
        every: list[Function] = []
        for _, port in sorted(self.root_bus.items()):
            every.append(port)
            every.extend(port.subtree())
        return [(self.requester_id(f), f) for f in every]

    def root_port_of(self, fn: Function) -> RootPort:
        """The root port above `fn` (or `fn` itself)."""
        node = fn
        while not isinstance(node, RootPort):
            assert node.parent is not None, f"{node.name} is not below a root port"
            node = node.parent
        return node

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
        carried up through the switch ports (PCIe Base 4.0 6.2.6) to its root port (the root
        port's own errors included)."""
        fn = self.find(requester_id)
        if fn is None:
            raise LookupError(f"no PCIe function at {format_bdf(requester_id)}")
        result = fn.aer_error(cor, uncor, header_log)
        for message in result.messages:
            blocked = self._deliver(fn, message, requester_id)
            if blocked is not None:
                result = replace(result, blocked_at=blocked)
        return result

    def _deliver(self, fn: Function, message: Message, requester_id: int) -> str | None:
        """Carry `message` from `fn` to its root port; the name of the port that stopped it, if one did."""
        node = fn
        while not isinstance(node, RootPort):
            parent = node.parent
            assert parent is not None, f"{node.name} is not below a root port"
            forwarded = parent.received_from_secondary(message)
            if not forwarded and not isinstance(parent, RootPort):
                log.info("%s: %s from %s not forwarded: SERR# Enable is clear in Bridge Control",
                         parent.name, message.value, format_bdf(requester_id))
                return parent.name
            node = parent
        node.receive(message, requester_id)
        return None
