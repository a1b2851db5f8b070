"""Linux boot to power-off: armras vs QEMU TCG + EDK2, same Debian kernel and initramfs.

    python benchmarks/bench_linux.py [--kernel 6.1|6.12] [--runs N]

Both boot the cached Debian kernel (`make kernels`) with the initramfs (`make guests`),
whose /init prints INIT-OK and powers off (PSCI SYSTEM_OFF) by itself. Each column is the
whole process, from spawn to exit: wall time, the time at which "Run /init as init process"
appeared on the console, and peak RSS (wait4's rusage of that child). The two emulators
alternate (armras, QEMU, armras, ...); medians [min-max] are compared.

QEMU: qemu-system-aarch64 -M virt,ras=on -cpu cortex-a57 -m 512 -bios QEMU_EFI.fd
-kernel ... -initrd ... -append ... -nographic -no-reboot (Debian's QEMU 7.2 TCG + EDK2;
the column is skipped with a note when they are not installed). Both get the command line
"console=ttyAMA0 panic=-1 nokaslr" (why nokaslr: see common.APPEND).

Targets (issue 8): boot to power-off <= 0.8x QEMU; peak RSS below QEMU's.
"""
from __future__ import annotations

from common import (APPEND, INIT_MARKER, QEMU_MISSING, armras_linux_cmd, find_qemu, interleave, linux_inputs,
                    median, parse_args, print_table, qemu_linux_cmd, require_power_off, run_timed, spread,
                    target_text, verdict)

BOOT_TARGET = 0.8   # armras/QEMU wall time, at most
RSS_TARGET = 1.0    # armras/QEMU peak RSS, below


def main() -> None:
    args = parse_args(__doc__)
    kernel, initrd = linux_inputs(args.kernel)
    qemu = find_qemu()
    markers = (INIT_MARKER,)
    columns = {"armras": lambda: run_timed(armras_linux_cmd(kernel, initrd, APPEND, smp=args.smp), markers)}
    if qemu is not None:
        columns["QEMU TCG"] = lambda: run_timed(qemu_linux_cmd(qemu, kernel, initrd, APPEND, smp=args.smp), markers)
    print(f"Debian {args.kernel} ({kernel.parent.name}), {args.smp} CPU(s): boot to power-off, "
          f"{args.runs} interleaved run(s)", flush=True)
    res = interleave(columns, args.runs, require_power_off)

    def column(name: str) -> tuple[list[float], list[float], list[float]]:
        runs = res[name]
        return ([r.marks.get(INIT_MARKER, float("nan")) for r in runs], [r.wall for r in runs],
                [r.max_rss_kib / 1024 for r in runs])

    ours = column("armras")
    headers = ["Debian " + args.kernel, "armras"]
    if qemu is None:
        rows = [["to /init (s)", spread(ours[0])], ["to power-off (s)", spread(ours[1])],
                ["peak RSS (MiB)", spread(ours[2], "{:.0f}")]]
        print_table("median [min-max]", headers, rows)
        print(QEMU_MISSING)
        return
    theirs = column("QEMU TCG")
    headers += ["QEMU TCG", "armras/QEMU", "target", "verdict"]
    rows = []
    for label, a, q, target, fmt in (("to /init (s)", ours[0], theirs[0], None, "{:.2f}"),
                                     ("to power-off (s)", ours[1], theirs[1], BOOT_TARGET, "{:.2f}"),
                                     ("peak RSS (MiB)", ours[2], theirs[2], RSS_TARGET, "{:.0f}")):
        ratio = median(a) / median(q)
        if target is None:
            tgt, ok = "", ""
        elif label.startswith("peak"):
            tgt, ok = f"< {target:g}x", "PASS" if ratio < target else "MISS"
        else:
            tgt, ok = target_text(target, at_most=True), verdict(ratio, target, at_most=True)
        rows.append([label, spread(a, fmt), spread(q, fmt), f"{ratio:.2f}x", tgt, ok])
    print_table("median [min-max] of the runs; ratio of medians", headers, rows)


if __name__ == "__main__":
    main()
