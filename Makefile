# heaptrail — the two commands are `make demo` and `make test`; both do all set-up.
SHELL := /bin/bash
PYTHONS := $(shell tools/pythons.sh)
PY311 := $(firstword $(PYTHONS))
VENV := .venv
VPY := $(VENV)/bin/python
PIP_FLAGS := --disable-pip-version-check -q
# test-time peers: the compatibility tests compare heaptrail with them
TEST_DEPS := setuptools wheel pytest protobuf pympler objgraph ipython memory_profiler
SRC := $(wildcard src/heaptrail/_core/*.c src/heaptrail/_core/*.h src/heaptrail/*.py src/heaptrail/*/*.py) setup.py pyproject.toml

.PHONY: demo test test-one asan bench dev clean venv

ifeq ($(PY311),)
$(error no CPython >= 3.11 found on this machine)
endif

# One venv per interpreter; .venv is the first (3.11). The stamp is rebuilt
# whenever a source file changes, so `make test` always tests what is checked out.
$(VENV)/.stamp: $(SRC)
	@test -x $(VPY) || $(PY311) -m venv $(VENV)
	@$(VPY) -m pip install $(PIP_FLAGS) $(TEST_DEPS)
	@$(VPY) -m pip install $(PIP_FLAGS) --no-build-isolation .
	@touch $@

venv: $(VENV)/.stamp

# The main job on the bundled example: capture the whole program and report
# it, then the live-object views (process memory, heap snapshot, deep sizes).
demo: $(VENV)/.stamp
	@mkdir -p build/demo
	@echo "== heaptrail run examples/orderbook.py"
	@$(VENV)/bin/heaptrail run -o build/demo/orderbook.htcap examples/orderbook.py
	@$(VENV)/bin/heaptrail flamegraph build/demo/orderbook.htcap -o build/demo/flamegraph.html
	@$(VENV)/bin/heaptrail plot build/demo/orderbook.htcap -o build/demo/memory.svg
	@echo "written: build/demo/flamegraph.html build/demo/memory.svg"
	@$(VPY) examples/demo.py

# The whole suite on every CPython >= 3.11 this machine has.
test:
	@set -e; for py in $(PYTHONS); do \
	    v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	    d=.venv; [ "$$py" = "$(PY311)" ] || d=.venv-$$v; \
	    $(MAKE) --no-print-directory test-one VENV=$$d PY311=$$py; \
	done

test-one: $(VENV)/.stamp
	@echo "== tests on $$($(VPY) --version) ($(VENV))"
	@cd tests && ../$(VPY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Extension built with ASan+UBSan, tests run with libasan preloaded.
# detect_leaks=0: CPython itself leaks by design at exit; our own leaks are
# checked by tests that start/stop engines many times and watch RSS.
asan:
	@test -x .venv-asan/bin/python || $(PY311) -m venv .venv-asan
	@.venv-asan/bin/python -m pip install $(PIP_FLAGS) $(TEST_DEPS)
	@HEAPTRAIL_ASAN=1 .venv-asan/bin/python -m pip install $(PIP_FLAGS) --no-build-isolation --force-reinstall --no-deps .
	@# a stale build once slipped in here uninstrumented: refuse to test one
	@.venv-asan/bin/python -c "import glob, sys, sysconfig; \
	    f = glob.glob(sysconfig.get_paths()['platlib'] + '/heaptrail/_core*.so'); \
	    sys.exit(0 if f and b'__asan_init' in open(f[0], 'rb').read() else \
	             'heaptrail: error: the extension in .venv-asan is not an ASan build')"
	@echo "== tests under ASan/UBSan"
	@cd tests && LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    HEAPTRAIL_UNDER_ASAN=1 PYTHONMALLOC=malloc \
	    ../.venv-asan/bin/python -m pytest -q -p no:cacheprovider -m "not noasan" $(PYTEST_ARGS)

bench: $(VENV)/.stamp
	@$(VPY) -m pip install $(PIP_FLAGS) pympler guppy3 objgraph memory_profiler memray scalene psutil || \
	    echo "note: some peers could not be installed; they will be reported as skipped"
	@$(VPY) benchmarks/run.py $(BENCH_ARGS)

# Developer loop: build in place, run with PYTHONPATH=src.
dev:
	@python3 setup.py -q build_ext --inplace

clean:
	rm -rf build dist src/*.egg-info src/heaptrail/*.so .venv .venv-* 
