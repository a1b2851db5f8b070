"""Driving a run from outside: the injection grammar, the control socket and its client, regress."""
