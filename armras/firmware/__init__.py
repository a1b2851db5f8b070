"""Platform firmware services the guest reaches by HVC/SMC (PSCI; UEFI for Linux boot)."""
