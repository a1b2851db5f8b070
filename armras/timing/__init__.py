"""Guest time: the system counter, the alarm thread, deterministic (instruction) time."""
