"""RAS: GHESv2 error sources, UEFI CPER records, SEA injection and page poisoning."""
