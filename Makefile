# The README's two commands: `make demo` and `make test`.
PRESET ?= mini
EXP ?= exp/synth-$(PRESET)

.PHONY: install demo test
install:
	bash tools/install.sh

demo: install
	PATH=$(CURDIR)/.venv/bin:$$PATH bash egs/synth/run.sh --preset $(PRESET) --exp-dir $(EXP)

test: install
	.venv/bin/python -m pytest -q tests
