#!/usr/bin/env python3
"""Static checks of the built guest ELFs (no emulator needed).

Checks the load layout the platform contract requires (ELF64 AArch64 executable,
entry = _start, every PT_LOAD at its physical address inside 0x40080000..0x401FF000),
the vector table (2 KiB aligned, 16 slots of 0x80 each starting with the frame push),
`victim_page` in ras_el0 (global, 4 KiB, page aligned, in the EL0 data pages), that
all code disassembles and uses no FP/SIMD register, and lists every system register the images touch so the
encodings can be eyeballed against the Arm ARM.
Usage: check_elfs.py build/*.elf
"""
import re
import sys

import capstone
from elftools.elf.elffile import ELFFile

LOAD_BASE = 0x40080000
LOAD_LIMIT = 0x401FF000          # L3_HOLE_VA: the image must stay below it

# Expected (op0, op1, CRn, CRm, op2) of the registers we use, from the Arm ARM.
SYSREGS = {
    "cntv_ctl_el0": (3, 3, 14, 3, 1), "cntv_cval_el0": (3, 3, 14, 3, 2),
    "cntv_tval_el0": (3, 3, 14, 3, 0), "cntvct_el0": (3, 3, 14, 0, 2),
    "cntp_ctl_el0": (3, 3, 14, 2, 1), "cntp_cval_el0": (3, 3, 14, 2, 2),
    "cntpct_el0": (3, 3, 14, 0, 1), "cntfrq_el0": (3, 3, 14, 0, 0), "vbar_el1": (3, 0, 12, 0, 0),
    "esr_el1": (3, 0, 5, 2, 0), "far_el1": (3, 0, 6, 0, 0), "elr_el1": (3, 0, 4, 0, 1),
    "spsr_el1": (3, 0, 4, 0, 0), "sp_el0": (3, 0, 4, 1, 0), "sctlr_el1": (3, 0, 1, 0, 0),
    "tcr_el1": (3, 0, 2, 0, 2), "ttbr0_el1": (3, 0, 2, 0, 0), "mair_el1": (3, 0, 10, 2, 0),
    "currentel": (3, 0, 4, 2, 2), "mpidr_el1": (3, 0, 0, 0, 5), "spsel": (3, 0, 4, 2, 0), "daif": (3, 3, 4, 2, 1),
}


# FP/SIMD register operands: the images are general-register only (no CPACR setup,
# vectors.S saves only X registers).
FPREG = re.compile(r"\b[bhsdqvz]\d+\b")


def sysreg_fields(word):
    return ((word >> 19) & 3, (word >> 16) & 7, (word >> 12) & 15, (word >> 8) & 15,
            (word >> 5) & 7)


def check(path):
    errors = []
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        h = elf.header
        if elf.elfclass != 64 or h.e_machine != "EM_AARCH64" or h.e_type != "ET_EXEC":
            errors.append(f"not an ELF64 AArch64 executable ({elf.elfclass}, {h.e_machine}, {h.e_type})")
        symtab = elf.get_section_by_name(".symtab")
        syms = {s.name: s for s in symtab.iter_symbols() if s.name}
        addr = lambda n: syms[n]["st_value"]
        if h.e_entry != addr("_start"):
            errors.append(f"entry 0x{h.e_entry:x} != _start 0x{addr('_start'):x}")
        loads = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]
        lo = min(p.p_paddr for p in loads)
        if lo != LOAD_BASE:
            errors.append(f"lowest PT_LOAD at 0x{lo:x}, expected 0x{LOAD_BASE:x}")
        for p in loads:
            if p.p_paddr != p.p_vaddr:
                errors.append(f"PT_LOAD vaddr 0x{p.p_vaddr:x} != paddr 0x{p.p_paddr:x}")
            if p.p_paddr < LOAD_BASE or p.p_paddr + p.p_memsz > LOAD_LIMIT:
                errors.append(f"PT_LOAD 0x{p.p_paddr:x}+0x{p.p_memsz:x} outside the image window")
        if addr("__image_end") > LOAD_LIMIT:
            errors.append("__image_end beyond L3_HOLE_VA")

        vec = addr("vectors")
        if vec % 0x800:
            errors.append(f"vectors at 0x{vec:x} not 2 KiB aligned")
        text = elf.get_section_by_name(".text")
        tbase, tdata = text["sh_addr"], text.data()
        md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        for slot in range(16):
            off = vec + slot * 0x80 - tbase
            ins = list(md.disasm(tdata[off:off + 16], vec + slot * 0x80))
            got = [f"{i.mnemonic} {i.op_str}" for i in ins]
            if len(got) != 4 or got[0] != "sub sp, sp, #0x110" or got[2] != f"mov x1, #{hex(slot * 0x80) if slot else '0'}":
                errors.append(f"vector slot 0x{slot * 0x80:03x}: {got}")

        if "victim_page" in syms:
            v = syms["victim_page"]
            if v["st_info"]["bind"] != "STB_GLOBAL" or v["st_size"] != 4096 or v["st_value"] % 4096:
                errors.append(f"victim_page: bind={v['st_info']['bind']} size={v['st_size']} at 0x{v['st_value']:x}")
            if not addr("__user_data_start") <= v["st_value"] < addr("__user_data_end"):
                errors.append("victim_page not in the EL0 data pages")
            print(f"  victim_page = 0x{v['st_value']:x} (global, {v['st_size']} B)")

        used = set()
        for sec in (".text", ".user_text"):
            s = elf.get_section_by_name(sec)
            if s is None:
                continue
            data, base = s.data(), s["sh_addr"]
            for off in range(0, len(data), 4):
                word = int.from_bytes(data[off:off + 4], "little")
                ins = list(md.disasm(data[off:off + 4], base + off))
                if not ins:
                    if not (word == 0 and "undef_insn" in syms and base + off == addr("undef_insn")):
                        errors.append(f"{sec}: undecodable word 0x{word:08x} at 0x{base + off:x}")
                    continue
                i = ins[0]
                if FPREG.search(i.op_str):
                    errors.append(f"{sec}: FP/SIMD instruction '{i.mnemonic} {i.op_str}' at 0x{base + off:x}")
                if i.mnemonic in ("mrs", "msr") and (word >> 20) & 0xFFD == 0xD51:   # MRS/MSR (register)
                    name = (i.op_str.split(", ")[1] if i.mnemonic == "mrs" else i.op_str.split(", ")[0])
                    used.add(name)
                    if name in SYSREGS and sysreg_fields(word) != SYSREGS[name]:
                        errors.append(f"{name} encoded as {sysreg_fields(word)} at 0x{base + off:x}")
                    elif name not in SYSREGS:
                        errors.append(f"unexpected system register {name} at 0x{base + off:x}")
        print(f"  entry 0x{h.e_entry:x}, vectors 0x{vec:x}, image 0x{LOAD_BASE:x}-0x{addr('__image_end'):x}")
        print(f"  system registers: {', '.join(sorted(used))}")
    return errors


def main():
    bad = 0
    for path in sys.argv[1:]:
        print(path)
        errs = check(path)
        for e in errs:
            print("  ERROR:", e)
        bad += bool(errs)
    print("OK" if not bad else f"{bad} image(s) failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
