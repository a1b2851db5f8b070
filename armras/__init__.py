"""armras: an ARMv8 RAS guest platform (GHESv2, CPER, SEA) emulated on Unicorn."""

__version__ = "0.1.0"
