"""Boot-to-/init time of Debian's arm64 kernel: armras vs QEMU TCG + EDK2 (when installed).

    python benchmarks/bench_linux.py [6.1|6.12] [--runs N]

Both boot the same cached kernel (`make kernels`) and initramfs (`make`), headless, and
are timed from process start to the kernel's "Run /init as init process" console line.
QEMU is measured only if qemu-system-aarch64 and an EDK2 image (Debian qemu-efi-aarch64)
are installed; nothing is installed or downloaded here.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from armras.kernels import cached_kernel

REPO = Path(__file__).resolve().parents[1]
INITRAMFS = REPO / "guest_images" / "build" / "linux" / "initramfs.cpio"
EDK2 = [Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"), Path("/usr/share/AAVMF/AAVMF_CODE.fd")]
MARKER = b"Run /init as init process"


def time_to_marker(cmd: list[str], timeout: float = 300) -> float:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seen = b""
    try:
        assert proc.stdout is not None
        while time.monotonic() - start < timeout:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            seen = (seen + chunk)[-4096:]
            if MARKER in seen:
                return time.monotonic() - start
        raise SystemExit(f"{cmd[0]}: no {MARKER.decode()!r} within {timeout:g} s; last output:\n"
                         f"{seen.decode(errors='replace')}")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("series", nargs="?", default="6.1")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    kernel = cached_kernel(args.series)
    if kernel is None or not INITRAMFS.exists():
        raise SystemExit("needs the cached kernel and initramfs: run `make kernels` and `make` first")
    append = "console=ttyAMA0 panic=-1"
    armras = [sys.executable, "-m", "armras", "run", "--kernel", str(kernel), "--initrd", str(INITRAMFS),
              "--append", append, "--timeout", "300"]
    ours = [time_to_marker(armras) for _ in range(args.runs)]
    print(f"armras     Debian {args.series}: boot to /init {statistics.median(ours):6.2f} s "
          f"(median of {args.runs}: {', '.join(f'{t:.2f}' for t in ours)})")
    qemu = shutil.which("qemu-system-aarch64")
    firmware = next((f for f in EDK2 if f.exists()), None)
    if qemu is None or firmware is None:
        print("QEMU TCG   not measured: install qemu-system-arm and qemu-efi-aarch64 to compare")
        return
    cmd = [qemu, "-M", "virt,ras=on", "-cpu", "cortex-a57", "-m", "512", "-nographic", "-bios", str(firmware),
           "-kernel", str(kernel), "-initrd", str(INITRAMFS), "-append", append, "-no-reboot"]
    theirs = [time_to_marker(cmd) for _ in range(args.runs)]
    q, a = statistics.median(theirs), statistics.median(ours)
    print(f"QEMU TCG   Debian {args.series}: boot to /init {q:6.2f} s (median of {args.runs})")
    print(f"ratio armras/QEMU: {a / q:.2f}x")


if __name__ == "__main__":
    main()
