"""Errors the user sees as one line on stderr with a non-zero exit (never a traceback)."""


class ArmrasError(Exception):
    """A user-facing error: bad input, a refused injection, a guest that ran away."""

    exit_code = 1


class GuestAddressError(ArmrasError):
    """A physical address (from the user or from the guest) outside guest RAM/flash."""


class ImageError(ArmrasError):
    """A malformed or unsupported guest image (ELF, arm64 Image, initrd)."""


class NotAcknowledged(ArmrasError):
    """A new error record was refused: the guest has not acknowledged the previous one."""
