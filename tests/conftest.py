"""Shared test helpers. Tests import the installed heaptrail (make test), or
src/ when run from a developer build (PYTHONPATH=src)."""
import os
import subprocess
import sys
import textwrap

import pytest

UNDER_ASAN = bool(os.environ.get("HEAPTRAIL_UNDER_ASAN"))


def pytest_configure(config):
    config.addinivalue_line("markers", "noasan: too slow or meaningless under ASan (RSS, timing-free sizes)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def run_python(code, *args, timeout=120, env=None, check=True, cwd=None):
    """Runs `code` in a fresh interpreter (this one's executable); returns the
    CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_cli(*args, timeout=120, input=None, cwd=None, env=None):
    """Runs `python -m heaptrail ARGS` in a subprocess; returns CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "heaptrail", *args],
        capture_output=True, text=True, timeout=timeout, input=input, cwd=cwd, env=full_env,
    )


@pytest.fixture
def cli(capsys):
    """Runs heaptrail.cli.main in-process; returns (code, stdout, stderr)."""
    from heaptrail.cli import main

    def run(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def tracing():
    """The allocation tracer, started for the test and stopped after it."""
    from heaptrail import tracer

    tracer.start()
    try:
        yield tracer
    finally:
        tracer.stop()


@pytest.fixture
def lines_isolated():
    """The line profiler's results cleared before and after the test, its tables kept off
    pytest's stdout at exit, and the tracer stopped after it unless it was already running."""
    from heaptrail import lines, tracer

    was = tracer.is_tracing()
    lines._shown_at_exit = True  # pytest's own exit: no tables on its stdout
    lines.reset()
    yield
    lines.reset()
    if not was:
        tracer.stop()
