"""ACPI tables of the armras board (RSDP, XSDT, FADT, MADT, GTDT, SPCR, DSDT, HEST)."""
from armras.firmware.acpi.dump import format_acpi, format_hest
from armras.firmware.acpi.tables import AcpiPlatform, AcpiTables, board_platform, build_acpi_tables

__all__ = [
    "AcpiPlatform",
    "AcpiTables",
    "board_platform",
    "build_acpi_tables",
    "format_acpi",
    "format_hest",
]
