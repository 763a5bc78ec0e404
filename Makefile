# The README's two commands: `make demo` and `make test`.
PRESET ?= mini_transfer
EXP ?= exp/synth-$(PRESET)

.PHONY: install demo test
install:
	bash tools/install.sh

demo: install
	PATH=$(CURDIR)/.venv/bin:$$PATH bash egs/synth/run.sh --preset $(PRESET) --exp-dir $(EXP)

# Two pytest-xdist workers, a test file each at a time, the longest files first (tests/conftest.py).
TEST_WORKERS ?= 2
test: install
	.venv/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests
