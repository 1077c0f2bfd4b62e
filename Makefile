# The two commands: `make study` (set-up + the whole study on the built-in default model)
# and `make test` (set-up + the test suite). Everything else is optional.
VENV ?= .venv
OUT ?= study

.PHONY: setup study test test-all bench clean
setup:
	@bash scripts/setup.sh

study: setup
	$(VENV)/bin/wclust study -o $(OUT)

test: setup
	$(VENV)/bin/python -m pytest -q

test-all: setup
	WCLUST_SLOW=1 $(VENV)/bin/python -m pytest -q

clean:
	rm -rf build src/wclust/*.so
