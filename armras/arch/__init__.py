"""The AArch64 CPU: exception entry Unicorn lacks, the native hooks, the stage-1 walk."""
