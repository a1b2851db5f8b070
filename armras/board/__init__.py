"""The virt board: its memory map, physical memory, and the machine that wires and runs it."""
