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


def test_a_cache_entry_without_its_package_gets_it_and_keeps_its_image(tmp_path, monkeypatch) -> None:
    from armras.guests import kernels

    monkeypatch.setenv("ARMRAS_CACHE", str(tmp_path))
    spec = kernels.KernelSpec("6.1", "linux-image-6.1.0-9-arm64-unsigned", "6.1.1-1")
    dest = kernels.kernels_dir() / spec.cache_name
    dest.mkdir(parents=True)
    (dest / "vmlinuz").write_bytes(b"the image another process may be booting")
    before = (dest / "vmlinuz").stat().st_ino
    monkeypatch.setattr(kernels, "find_kernel", lambda series, setup_apt=False: spec)

    def download(spec_, tmp):
        deb = tmp / "linux-image.deb"
        deb.write_bytes(b"!<arch>\n")
        return deb

    monkeypatch.setattr(kernels, "_download_deb", download)
    assert kernels.fetch_kernel("6.1") == dest / "vmlinuz"
    assert (dest / kernels.DEB_FILE).read_bytes() == b"!<arch>\n"
    assert (dest / "vmlinuz").stat().st_ino == before
    assert sorted(p.name for p in dest.iterdir()) == [kernels.DEB_FILE, "vmlinuz"]   # no temporary left
