# armras: build the guest images, fetch reference kernels, run tests and benchmarks.
PYTHON ?= python3

.PHONY: all guests kernels test test-kernel bench clean

all: guests

guests:
	$(MAKE) -C guest_images PYTHON=$(PYTHON)
	$(MAKE) -C guest_images/linux PYTHON=$(PYTHON)

# Debian's arm64 kernels (apt-get download; cached under ~/.cache/armras, never committed).
# --setup-apt: may run dpkg --add-architecture arm64 / apt-get update and add a pinned
# bookworm-backports source (needs root; what .ci/run's fresh machine needs).
kernels:
	$(PYTHON) -m armras fetch-kernel --setup-apt 6.1 6.12

test: guests
	$(PYTHON) -m pytest -q

bench: guests
	$(PYTHON) benchmarks/bench_core.py
	$(PYTHON) benchmarks/bench_linux.py 6.1

clean:
	$(MAKE) -C guest_images clean
