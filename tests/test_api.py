"""The Python API (armras.api): boot a bare-metal guest, wait for its lines, inject, read
its acknowledgements, and the errors a caller can make.

The guests' lines are those of guest_images/ras_ref.c and ras_el0.c; the syndromes are
QEMU/KVM's for an injected SEA (kvm_inject_arm_sea: EC 0x25 from EL1, DFSC 0x10, FnV).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import armras
from armras.api import ExpectationFailed, GuestExited, WaitTimeout
from armras.errors import ArmrasError, NotAcknowledged
from conftest import assemble, make_elf


def test_sea_round_trip_through_the_api(guest_images: Path) -> None:
    with armras.boot(guest_images / "ras_ref.elf") as vm:
        # boot() returns with the guest stopped before its first instruction.
        assert vm.instructions == 0 and vm.console == "" and vm.exit_status is None
        m = vm.wait_for(r"^READY")
        assert m.group(0) == "READY"
        # Stopped right after the line: guest time and instructions stand still.
        t, n = vm.guest_time, vm.instructions
        time.sleep(0.2)
        assert (vm.guest_time, vm.instructions) == (t, n) and n > 0
        assert "HEST source=0 type=10 notify=8" in vm.console
        assert vm.inject("sea:pa=0x40fa6000") == 0
        # The record is in the block, the guest has not run since: not yet acknowledged.
        before = vm.ack_state(0)
        assert (before.read_ack, before.acknowledged, before.block_status, before.records_written) == (0, False, 1, 1)
        # A second record before the guest acknowledged the first is refused, not written.
        with pytest.raises(NotAcknowledged, match="has not acknowledged"):
            vm.inject("sea:pa=0x40fa7000")
        vm.expect(r"SEA ESR=0x96000410 EC=0x25 DFSC=0x10 FnV=1")
        ack = vm.expect(r"ACK source=0 read_ack=(0x[0-9a-f]+) block_status=(0x[0-9a-f]+)")
        assert ack.groups() == ("0x1", "0x0")
        after = vm.ack_state(0)
        assert (after.read_ack, after.acknowledged, after.block_status, after.records_written) == (1, True, 0, 1)
        assert vm.wait_exit() == 0
        assert vm.exit_status == 0 and not vm.running and vm.error is None
        assert "CPER section=memory pa=0x0000000040fa6000" in vm.console
        assert re.search(r"^DONE sea=1 gpio=0", vm.console, re.M)
        vm.expect_not(r"invalid=[1-9]")
        with pytest.raises(ExpectationFailed, match="DONE sea=1"):
            vm.expect_not(r"DONE sea=1")
        # Still readable after power-off; nothing can be done to the guest any more.
        assert vm.ack_state(0).acknowledged and vm.guest_time > 1.0
        with pytest.raises(GuestExited, match="powered off with status 0"):
            vm.inject("sea:pa=0x40fa6000")
        kinds = [e["event"] for e in vm.events]
        assert kinds[0] == "boot" and kinds[-1] == "power_off"


def test_waits_search_from_the_previous_match(guest_images: Path) -> None:
    with armras.boot(guest_images / "ras_ref.elf") as vm:
        first = vm.wait_for(r"^HEST source=(\d)")
        second = vm.wait_for(r"^HEST source=(\d)")
        assert (first.group(1), second.group(1)) == ("0", "1")
        vm.wait_for("^READY")
        # READY has been consumed: a second wait for it runs to the end of the guest.
        with pytest.raises(GuestExited, match="before the guest powered off with status 0"):
            vm.wait_for("^READY")
        with pytest.raises(ExpectationFailed, match="and the guest powered off with status 0"):
            vm.expect("^READY")


def test_poison_from_the_api_reaches_el0(guest_images: Path) -> None:
    with armras.boot(guest_images / "ras_el0.elf") as vm:
        pa = int(vm.wait_for(r"VICTIM pa=(0x[0-9a-f]+)").group(1), 16)
        assert vm.poison(pa) == pa & ~0xFFF
        vm.expect(r"SEA from EL0 ESR=0x92000410 EC=0x24 DFSC=0x10 FnV=1")
        vm.expect(rf"EL0 task killed: SIGBUS BUS_MCEERR_AR at pa={pa:#x}")
        assert vm.wait_exit() == 0


def test_wait_timeout_stops_the_guest(tmp_path: Path) -> None:
    # A guest that spins for ever (`b .`): a pattern it never prints times out after the
    # host seconds given, and the guest is left stopped, its time frozen, not ended.
    # (ras_ref, used before, now finishes its idle-heavy workload in under 0.05 s.)
    image = tmp_path / "spin.elf"
    image.write_bytes(make_elf(assemble(" b .")))
    with armras.boot(image) as vm:
        with pytest.raises(WaitTimeout, match="NEVER"):
            vm.wait_for("NEVER", timeout=0.05)
        t = vm.guest_time
        time.sleep(0.1)
        assert vm.guest_time == t and vm.running


def test_run_errors_are_reported_not_raised_by_wait_exit(guest_images: Path) -> None:
    # A guest that cannot finish within the run's timeout: exit 124 as `armras run`.
    with armras.boot(guest_images / "ras_ref.elf", timeout=0.3) as vm:
        vm.wait_for("^READY")
        time.sleep(0.5)            # stopped time counts against the run's timeout
        assert vm.wait_exit() == 124
        assert vm.error is not None and "within 0.3 s" in str(vm.error)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give either a bare-metal image or kernel="),
    ({"image": "x.elf", "kernel": "debian:6.1"}, "give either"),
    ({"image": "x.elf", "initrd": "i.cpio"}, "initrd= and append= need kernel="),
    ({"image": "IMAGE", "memory": "0"}, "0"),
    ({"image": "IMAGE", "memory": "3M"}, "3M"),
    ({"image": "IMAGE", "smp": 9}, "9"),
    ({"image": "IMAGE", "timeout": float("nan")}, "nan"),
    ({"image": "IMAGE", "timeout": -1}, "-1"),
    ({"image": "IMAGE", "console": "IMAGE"}, "refusing to overwrite an input"),
    ({"image": "IMAGE", "events": "IMAGE"}, "refusing to overwrite an input"),
    ({"image": "IMAGE", "console": "SAME", "events": "SAME"}, "refusing to overwrite"),
    ({"image": "missing.elf"}, "missing.elf"),
])
def test_bad_boot_arguments_are_one_clear_error(kwargs: dict, message: str, guest_images: Path,
                                                tmp_path: Path) -> None:
    image = str(guest_images / "ras_ref.elf")
    same = str(tmp_path / "same.log")
    args = {k: (image if v == "IMAGE" else same if v == "SAME" else
                str(tmp_path / v) if v == "missing.elf" else v) for k, v in kwargs.items()}
    with pytest.raises(ArmrasError) as info:
        armras.boot(**args).close()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_requests_are_one_clear_error(guest_images: Path) -> None:
    with armras.boot(guest_images / "ras_ref.elf") as vm:
        for call, message in [
            (lambda: vm.wait_for("(unclosed"), "bad regex"),
            (lambda: vm.wait_for(""), "non-empty"),
            (lambda: vm.wait_for("x", timeout=float("inf")), "timeout"),
            (lambda: vm.inject("sea:pa=0x1,pa=0x2"), "given twice"),
            (lambda: vm.inject("sea:pa=0x1000"), "outside guest RAM"),
            (lambda: vm.inject("bogus:pa=0x40000000"), "unknown kind"),
            (lambda: vm.ack_state(9), "no GHES error source with id 9"),
            (lambda: vm.poison(0x10), "outside guest RAM"),
            (lambda: vm.poison("no_such_symbol"), "neither an address nor a symbol"),
            (lambda: vm.poison(None), "not an address"),   # type: ignore[arg-type]
        ]:
            with pytest.raises(ArmrasError, match=message) as info:
                call()
            assert "\n" not in str(info.value)
        # None of that disturbed the guest.
        vm.wait_for("^READY")
        assert vm.wait_exit() == 0


def test_close_powers_off_a_running_guest(guest_images: Path) -> None:
    vm = armras.boot(guest_images / "ras_ref.elf")
    vm.wait_for("^READY")
    vm.close()
    assert not vm.running and vm.exit_status == 0
    assert vm.events[-1]["event"] == "power_off"
    assert vm.events[-1]["reason"] == "closed by the armras Python API"


def test_a_warm_reset_boots_again_under_the_same_vm(tmp_path: Path) -> None:
    from conftest import assemble, make_elf

    # Prints HI, loops a while, then asks for a warm reset (PSCI SYSTEM_RESET, function id 0x84000009).
    image = tmp_path / "reset.elf"
    image.write_bytes(make_elf(assemble("""
 ldr x1, =0x09000000
 mov w2, #'H'
 str w2, [x1]
 mov w2, #'I'
 str w2, [x1]
 mov w2, #10
 str w2, [x1]
 mov x3, #1000
2: subs x3, x3, #1
 b.ne 2b
 ldr x0, =0x84000009
 hvc #0
1: b 1b
""")))
    with armras.boot(image, max_reboots=1) as vm:
        vm.wait_for("^HI$")
        assert vm.boots == 1
        vm.wait_for("^HI$")                  # printed by the second boot, on a fresh board
        assert vm.boots == 2 and vm.instructions < 100
        assert vm.wait_exit() == 1
        assert "--max-reboots 1 ends the run here" in str(vm.error)
    kinds = [(e["event"], e["boot"]) for e in vm.events]
    assert kinds == [("boot", 1), ("reset", 1), ("boot", 2), ("reset", 2), ("error", 2)], kinds
    assert vm.console == "HI\nHI\n"
