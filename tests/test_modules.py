"""modules.dep as depmod writes it, for modules taken from a kernel package (no kernel needed).

depmod's format (kmod's modules.dep(5)): "path: dep dep ...", each module's whole
dependency closure, listed so that the last one is loaded first.
"""
from __future__ import annotations

import pytest

from armras.errors import ArmrasError
from armras.guests.modules import Module, kernel_package, modinfo_depends, module_name, modules_dep


def mod(name: str, *depends: str) -> Module:
    return Module(name, "6.1.0-1-arm64", f"kernel/x/{name}.ko", b"", depends)


def test_modules_dep_lists_the_closure_last_loaded_first() -> None:
    text = modules_dep([mod("c"), mod("b", "c"), mod("a", "b"), mod("d", "a", "c")])
    assert text.splitlines() == [
        "kernel/x/c.ko:",
        "kernel/x/b.ko: kernel/x/c.ko",
        "kernel/x/a.ko: kernel/x/b.ko kernel/x/c.ko",
        "kernel/x/d.ko: kernel/x/a.ko kernel/x/b.ko kernel/x/c.ko",   # loaded c, b, a, then d
    ]


def test_module_names_as_kmod_compares_them() -> None:
    assert module_name("kernel/fs/nls/nls-utf8.ko.xz") == "nls_utf8"
    assert module_name("einj.ko") == "einj"


def test_a_file_that_is_not_a_module_is_one_clear_error() -> None:
    with pytest.raises(ArmrasError, match="not an ELF object"):
        modinfo_depends(b"not elf at all", "kernel/x/bad.ko")


def test_a_kernel_without_its_package_says_what_to_run(tmp_path) -> None:
    image = tmp_path / "vmlinuz"
    image.write_bytes(b"")
    with pytest.raises(ArmrasError, match="make kernels"):
        kernel_package(str(image))
