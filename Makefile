# Thin wrappers: dev.py does the work and needs only Python 3.11+.
PYTHON ?= python3

.PHONY: demo test bench studio
demo:
	$(PYTHON) dev.py demo
test:
	$(PYTHON) dev.py test
bench:
	$(PYTHON) dev.py bench
studio:
	$(PYTHON) dev.py studio
