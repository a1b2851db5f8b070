"""What runs on the board: ELF images and their symbols, Linux (Image, kallsyms, initramfs, Debian kernels)."""
