"""Firmware-first error notification on Debian's unmodified kernels: SDEI and polled GHES.

What the kernel prints comes from drivers/firmware/arm_sdei.c ("SDEIv%d.%d (0x%x) detected
in firmware."), drivers/acpi/apei/ghes.c ("Hardware error from APEI Generic Hardware Error
Source: %d") and mm/memory-failure.c ("Memory failure: %#lx: recovery action for %s: %s").
The shipped scenarios scenarios/linux_*_firmware_first.toml cover a user-described HEST
(normal and critical SDEI events, a GHES v1 polled source) through `armras regress`.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from armras.board.machine import Machine, MachineConfig
from armras.drive.inject import parse_inject_spec, schedule
from armras.guests.linux import boot_linux
from armras.ras.sources import BOARD_SOURCES, Notify, SourceSpec
from conftest import boot_linux_here, debian_kernel
from test_smp import initramfs  # noqa: F401  (fixture)

pytestmark = pytest.mark.kernel

SDEI_DETECTED = "sdei: SDEIv1.1 (0x0) detected in firmware."
# Pages of free memory well inside the 512 MiB guest: memory_failure() offlines free pages.
SDEI_PA, POLLED_PA = 0x4800_0000, 0x4800_3000
# nokaslr: those pages must be free. With KASLR (armras seeds it, as EDK2 does) the EFI stub
# loads the kernel image at a random 2 MiB slot of RAM, which may cover them; memory_failure()
# then reports "get hwpoison page: Ignored" instead of recovering a free page.
NOKASLR = "nokaslr"


def _boot(series: str, initrd: Path, append: str, injections: list[str], cpus: int = 1,
          states: dict[int, list[int]] | None = None,
          hest: tuple[SourceSpec, ...] = BOARD_SOURCES) -> tuple[Machine, str, int]:
    """Boot to power-off; `states` gets event 804's SDEI state per CPU when /init starts sleeping."""
    def prepare(m: Machine) -> None:
        if states is not None:
            m.on_console(r"^SLEEP ms=", lambda _: states.update(
                {804: [int(m.sdei.registration(804, c).state) for c in range(cpus)]}), "SDEI states")

    return boot_linux_here(series, initrd, append, injections, prepare, cpus=cpus, hest=hest)


def _block(out: str, source: int) -> str:
    """The kernel's report for `source`: its header line and the lines of the same {N}."""
    m = re.search(rf"\{{(\d+)\}}\[Hardware Error\]: Hardware error from APEI Generic Hardware Error Source: "
                  rf"{source}$", out, re.M)
    assert m, f"no report for source {source}:\n{out[-3000:]}"
    return "\n".join(line for line in out.splitlines() if f"{{{m.group(1)}}}[Hardware Error]" in line)


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_sdei_and_polled_sources_of_the_default_board(series: str, initramfs: Path) -> None:  # noqa: F811
    states: dict[int, list[int]] = {}
    m, out, status = _boot(series, initramfs, f"console=ttyAMA0 {NOKASLR} armras_sleep_ms=3000", [
        f"sdei:pa={SDEI_PA:#x},on=^SLEEP ms=",
        f"polled:pa={POLLED_PA:#x},on=^SLEEP ms=",
    ], states=states)
    assert status == 0, out[-3000:]
    assert SDEI_DETECTED in out
    sdei = _block(out, 2)
    assert "section_type: memory error" in sdei and f"physical_address: {SDEI_PA:#018x}" in sdei
    assert f"Memory failure: {SDEI_PA >> 12:#x}: recovery action for free buddy page: Recovered" in out
    # The polled source is found at the kernel's next poll (every 1000 ms), while /init sleeps.
    polled = _block(out, 3)
    assert f"physical_address: {POLLED_PA:#018x}" in polled
    assert f"Memory failure: {POLLED_PA >> 12:#x}: recovery action for free buddy page: Recovered" in out
    before_done = out[:out.index("SLEEP DONE")]
    assert "Source: 3" in before_done
    # Linux acknowledged both records (GHESv2 read-ack written back to 1). While it ran, the
    # SDEI source's event was registered and enabled (EVENT_STATUS bits 0 and 1); its reboot
    # notifier resets SDEI (PRIVATE_RESET/SHARED_RESET) before powering off.
    for source_id in (2, 3):
        source = m.sources.by_id(source_id)
        assert source.records_written == 1 and source.read_ack() == 1 and source.block_status() == 0
    assert states == {804: [0b011]}
    assert int(m.sdei.registration(804, 0).state) == 0
    assert m.sdei.pes[0].taken == 1


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_sdei_event_taken_on_the_chosen_cpu(series: str, initramfs: Path) -> None:  # noqa: F811
    states: dict[int, list[int]] = {}
    m, out, status = _boot(series, initramfs, f"console=ttyAMA0 {NOKASLR} armras_sleep_ms=1000",
                           [f"sdei:pa={SDEI_PA:#x},cpu=1,on=^SLEEP ms="], cpus=2, states=states)
    assert status == 0, out[-3000:]
    assert f"physical_address: {SDEI_PA:#018x}" in _block(out, 2)
    assert f"Memory failure: {SDEI_PA >> 12:#x}: recovery action for free buddy page: Recovered" in out
    # Event 804 is private: Linux registered it on every CPU, and CPU 1 took it.
    assert [pe.taken for pe in m.sdei.pes] == [0, 1]
    assert states == {804: [0b011, 0b011]}


def test_sdei_injection_before_the_kernel_registers_is_refused(initramfs: Path) -> None:  # noqa: F811
    # At guest time 0 no OS has registered event 804: firmware would drop the notification,
    # so armras refuses it with one line and writes no record that would block the source.
    console = io.BytesIO()
    m = Machine(MachineConfig(console=console, timeout=60.0))
    try:
        boot_linux(m, debian_kernel("6.1"), initramfs, "console=ttyAMA0")
        schedule(m, parse_inject_spec(f"sdei:pa={SDEI_PA:#x}"))
        with pytest.raises(Exception, match="SDEI event 804 is not registered by the guest on CPU 0"):
            m.run()
        assert m.sources.by_id(2).records_written == 0 and m.sources.by_id(2).read_ack() == 1
    finally:
        m.close()


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_sei_source_is_refused_by_linux_and_its_serror_graded_by_severity(series: str,
                                                                         initramfs: Path) -> None:  # noqa: F811
    # A server HEST with an ARMv8 SEI source (notification type 9): Linux's ghes_probe() has no
    # SEI support and says so at boot ("Unknown notification type: %u for generic hardware error
    # source: %d", drivers/acpi/apei/ghes.c). The SError firmware raises alongside a corrected
    # record carries AET = CE, which arm64_is_fatal_ras_serror() survives silently.
    hest = (*BOARD_SOURCES, SourceSpec(4, Notify.SEI))
    m, out, status = _boot(series, initramfs, f"console=ttyAMA0 {NOKASLR} armras_sleep_ms=1000",
                           [f"sei:pa={SDEI_PA:#x},severity=corrected,on=^SLEEP ms="], hest=hest)
    assert status == 0, out[-3000:]
    assert "[Firmware Warn]: GHES: Unknown notification type: 9 for generic hardware error source: 4" in out
    sei = m.sources.by_id(4)
    assert sei.records_written == 1 and sei.block_status() == 0x2     # correctable, never consumed
    assert m.vcpus[0].serrors_taken == 1
    assert "SLEEP DONE" in out and "SError Interrupt" not in out and "Kernel panic" not in out


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_memory_error_names_its_dimm_from_smbios(series: str, initramfs: Path) -> None:  # noqa: F811
    # dimm=yes sets the memory section's Module Handle (UEFI N.2.5, validation bit 17) to the
    # board's SMBIOS type 17 structure; Linux's cper_print_mem looks it up with dmi_memdev_name
    # and prints its bank and device locators.
    m, out, status = _boot(series, initramfs, f"console=ttyAMA0 {NOKASLR} armras_sleep_ms=1000",
                           [f"gpio:pa={SDEI_PA:#x},dimm=yes,on=^SLEEP ms="])
    assert status == 0, out[-3000:]
    gpio = _block(out, 1)
    assert f"physical_address: {SDEI_PA:#018x}" in gpio
    assert "DIMM location: BANK 0 DIMM 0" in gpio, gpio
