# armras: build the guest images, fetch reference kernels, run tests and benchmarks.
PYTHON ?= python3

.PHONY: all guests kernels test test-kernel bench clean

all: guests

guests:
	$(MAKE) -C guest_images PYTHON=$(PYTHON)
	$(MAKE) -C guest_images/linux PYTHON=$(PYTHON)

# Debian's arm64 kernels (apt-get download; cached under ~/.cache/armras, never committed).
kernels:
	$(PYTHON) -m armras fetch-kernel 6.1 6.12

test: guests
	$(PYTHON) -m pytest -q

bench: guests
	$(PYTHON) benchmarks/bench_core.py
	$(PYTHON) benchmarks/bench_linux.py 6.1

clean:
	$(MAKE) -C guest_images clean
