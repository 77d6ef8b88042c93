"""Line-by-line memory profiling: memory_profiler's @profile, from the tracer.

    from heaptrail import profile

    @profile
    def build():
        a = bytearray(10 * 2**20)
        ...

At exit (or on `heaptrail.lines.show()`), each decorated function's table,
in memory_profiler's layout plus two columns:

    Line #    Mem usage    Increment  Occurrences    Allocated         Peak   Line Contents

Increment is the bytes the line allocated minus the bytes it freed (what
traced memory really did, not an RSS sample), Allocated the bytes it
allocated whatever was freed later, Peak the highest traced memory reached
while it ran, Mem usage the traced memory after it (RSS with rss=True / --rss).
Whatever inner functions, comprehensions and library calls do is charged to
the decorated function's line that called them; a recursive function's line
is charged by its outermost running instance only (the bytes of the levels
below it once, not once per level). @profile over a function that wraps
another (functools.wraps, lru_cache: __wrapped__) profiles the lines of the
innermost one; the source shown is the one read when it was decorated.

Differences from memory_profiler: the tables are printed at exit (or on
show()), one per function with every call's lines summed, not after each
call; `backend=` picks the Mem usage column only (RSS for 'psutil',
'psutil_pss', 'psutil_uss', 'posix', traced bytes for 'tracemalloc'; the
other columns are always traced bytes). memory_usage() samples RSS (PSS,
USS) as memory_profiler's does, with the differences its docstring lists.
LineProfiler and show_results are not provided.
%memit and %mprun take memory_profiler's options (-r -t -i -c -o -q; -f
-T -c -r) and report traced bytes: %memit's increment is how far traced
memory rose above the start while the statement ran (memory_profiler: the
RSS peak above the baseline); -t, -i and -c are accepted and change nothing;
-o returns {"peak", "increment", "retained"} (bytes; retained is what the
statement left allocated), %mprun -r the rows of results().

`python -m heaptrail.lines script.py ARGS` (also `heaptrail lines`) runs a
script with `profile` in builtins, as `python -m memory_profiler` does.
The engine is C (`_core/lines.c`); its design is written in `_core/lines.h`.
"""
import argparse
import atexit
import functools
import inspect
import json
import linecache
import re
import sys
import time as _time

from heaptrail import _core
from heaptrail import tracer
from heaptrail._format import write_file

__all__ = ["profile", "show", "results", "reset", "format_results", "main", "memory_usage"]

MIB = 1024 * 1024
HEADER_FIELDS = ("Line #", "Mem usage", "Increment", "Occurrences", "Allocated", "Peak", "Line Contents")
_TEMPLATE = "{0:>6} {1:>12} {2:>12}  {3:>10} {4:>12} {5:>12}   {6:<}"

# code object -> {"function", "filename", "stream", "precision"}; in decoration order
_profiled = {}
_atexit_registered = False
_rss = False


def _ensure_tracing():
    """The tracer must run: counting only (frames=0) unless already started."""
    if not tracer.is_tracing():
        tracer.start(frames=0)


def _register(func, stream, precision):
    global _atexit_registered
    code = func.__code__
    _core._lines_register(code)
    if code not in _profiled:
        # the source as it is now, when the code is: a file edited or deleted after the
        # import would show other lines than those that ran (the loader's source too: zips)
        source = _source_lines(code.co_filename, code.co_firstlineno,
                               getattr(func, "__globals__", None))
        _profiled[code] = {"function": func.__qualname__, "filename": code.co_filename,
                           "stream": stream, "precision": precision, "source": source}
    if not _atexit_registered:
        atexit.register(_show_at_exit)
        _atexit_registered = True


def _enter(is_tracing=_core._tracer_is_tracing, enter=_core._lines_enter, gettrace=sys.gettrace):
    """A profiled function starts on this thread; returns the Python trace
    function it replaces (a debugger's, coverage's) for _leave to restore.
    The tracer starts at the first call (not at decoration: importing a
    module starts no engine)."""
    if not is_tracing():
        tracer.start(frames=0)
    prev = gettrace()
    enter()
    return prev


def _leave(prev, leave=_core._lines_leave, gettrace=sys.gettrace):
    leave()
    if prev is not None and gettrace() is None:
        sys.settrace(prev)


def _wrap(func, inner=None):
    """The wrapper that runs `func` profiled, of `func`'s kind (generator, coroutine ...).
    When `func` is a plain decorator's wrapper around a generator or coroutine function
    (`inner`, its __wrapped__) and returns that generator or coroutine, the body runs when it
    is iterated or awaited: the result is wrapped to be profiled then. Anything else it
    returns (contextmanager's helper object ...) is returned as it is."""
    enter, leave = _enter, _leave
    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def gen_wrapper(*args, **kwargs):
            return (yield from _profiled_gen(func(*args, **kwargs)))
        return gen_wrapper
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def coro_wrapper(*args, **kwargs):
            return await _profiled_coro(func(*args, **kwargs))
        return coro_wrapper
    if inspect.isasyncgenfunction(func):
        @functools.wraps(func)
        async def agen_wrapper(*args, **kwargs):
            prev = enter()
            try:
                async for item in func(*args, **kwargs):
                    yield item
            finally:
                leave(prev)
        return agen_wrapper

    if inner is not None and (inspect.iscoroutinefunction(inner) or inspect.isgeneratorfunction(inner)):
        @functools.wraps(func)
        def deferred_wrapper(*args, **kwargs):
            prev = enter()
            try:
                result = func(*args, **kwargs)
            finally:
                leave(prev)
            if inspect.iscoroutine(result) and inspect.iscoroutinefunction(inner):
                return _profiled_coro(result)
            if inspect.isgenerator(result) and inspect.isgeneratorfunction(inner):
                return _profiled_gen(result)
            return result
        return deferred_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        prev = enter()
        try:
            return func(*args, **kwargs)
        finally:
            leave(prev)
    return wrapper


def _profiled_gen(gen):
    prev = _enter()
    try:
        return (yield from gen)
    finally:
        _leave(prev)


async def _profiled_coro(coro):
    prev = _enter()
    try:
        return await coro
    finally:
        _leave(prev)


def _profiled_function(func):
    """The function whose lines are profiled: the innermost one `func` wraps (__wrapped__, as
    functools.wraps, lru_cache and profile itself set it), else `func`. Profiling a
    wrapper's code would charge every function that wrapper decorates (profile's own
    wrapper: every profiled function) to one table of the decorator's lines."""
    try:
        inner = inspect.unwrap(func)
    except ValueError:  # a __wrapped__ cycle
        inner = func
    if hasattr(inner, "__code__"):
        return inner
    if hasattr(func, "__code__"):
        return func
    raise TypeError("profile needs a function, not %s" % type(func).__name__)


_BACKENDS = ("psutil", "psutil_pss", "psutil_uss", "posix", "tracemalloc")


def profile(func=None, stream=None, precision=1, backend=None, rss=None):
    """Decorator: profile `func` line by line. As memory_profiler's:
    `@profile`, or `@profile(stream=f, precision=3, backend='psutil')`.
    `rss=True` shows RSS in the Mem usage column (the other columns stay
    traced bytes); memory_profiler's `backend` names say the same:
    'tracemalloc' is rss=False, the others ('psutil', 'psutil_pss',
    'psutil_uss', 'posix') rss=True. None (heaptrail's default, where
    memory_profiler's is 'psutil') leaves the column as it is."""
    global _rss
    if isinstance(precision, bool) or not isinstance(precision, int) or precision < 0:
        raise ValueError("precision must be an int >= 0, not %r" % (precision,))
    # code written for memory_profiler passes backend=: a TypeError there would stop it
    if backend is not None and backend not in _BACKENDS:
        raise ValueError("backend must be one of %s, not %r" % (", ".join(_BACKENDS), backend))
    if rss is None and backend is not None:
        rss = backend != "tracemalloc"
    if rss is not None:
        _rss = bool(rss)
        _core._lines_set_rss(_rss)
    if func is None:
        return functools.partial(profile, stream=stream, precision=precision)
    if isinstance(func, (staticmethod, classmethod)):
        return type(func)(profile(func.__func__, stream=stream, precision=precision))
    inner = _profiled_function(func)
    _register(inner, stream, precision)
    return _wrap(func, inner if inner is not func else None)


def _source_lines(filename, first, module_globals=None):
    """The function's source lines from `first` (1-based) to its end; [] when there is no
    source (exec'd or compiled code, a file gone)."""
    lines = linecache.getlines(filename, module_globals)
    if not lines or first > len(lines):
        return []
    try:
        block = inspect.getblock(lines[first - 1:])
    except Exception:  # tokenizer errors on odd sources: show what we ran
        block = lines[first - 1:]
    return block


def results():
    """Every profiled function's rows, as data (bytes, not MiB): a list of
    dicts {function, filename, first_line, has_source, rows: [{line,
    mem_usage, increment, occurrences, allocated, peak, contents}]}; lines
    that never ran have None in their numbers; contents are the source as
    it was when the function was decorated ("" without source)."""
    out = []
    for code, first, rows in _core._lines_results():
        info = _profiled.get(code, {"function": code.co_name, "filename": code.co_filename})
        by_line = {r[0]: r for r in rows}
        source = info.get("source")
        if not source:  # none at decoration (IPython adds cells to linecache later)
            source = _source_lines(code.co_filename, first)
        last = max([first + len(source) - 1] + list(by_line))
        table = []
        for line in range(first, last + 1):
            i = line - first
            text = source[i].rstrip("\n") if i < len(source) else ""
            r = by_line.get(line)
            if r is None:
                table.append({"line": line, "mem_usage": None, "increment": None, "occurrences": None,
                              "allocated": None, "peak": None, "contents": text})
            else:
                table.append({"line": line, "mem_usage": r[5], "increment": r[2], "occurrences": r[1],
                              "allocated": r[3], "peak": r[4], "contents": text})
        out.append({"function": info["function"], "filename": info["filename"],
                    "first_line": first, "has_source": bool(source), "rows": table})
    return out


def _mib(value, precision):
    return ("{0:%d.%df} MiB" % (precision + 4, precision)).format(value / MIB)


def format_function(fres, precision=1):
    """One function's table, memory_profiler's layout plus Allocated and Peak."""
    header = _TEMPLATE.format(*HEADER_FIELDS)
    out = ["Filename: " + fres["filename"], "", header, "=" * len(header)]
    for r in fres["rows"]:
        if r["occurrences"] is None:
            cells = ("", "", "", "", "")
        else:
            cells = (_mib(r["mem_usage"], precision), _mib(r["increment"], precision), r["occurrences"],
                     _mib(r["allocated"], precision), _mib(r["peak"], precision))
        out.append(_TEMPLATE.format(r["line"], *cells, r["contents"]))
    if not fres.get("has_source", True):
        out.append("(no source for %s: the code was exec'd or compiled from a string, or its "
                   "file is gone; Line Contents are empty)" % fres["function"])
    return "\n".join(out) + "\n\n\n"


def format_results(res=None, precision=None):
    """Every table as one string (each function with its own precision
    unless `precision` is given)."""
    res = results() if res is None else res
    parts = []
    for fres in res:
        p = precision
        if p is None:
            p = next((i["precision"] for c, i in _profiled.items()
                      if c.co_filename == fres["filename"] and c.co_firstlineno == fres["first_line"]), 1)
        parts.append(format_function(fres, p))
    return "".join(parts)


# (filename, first line) -> the rows a table showed last: the tables printed at exit leave
# out those that show() already printed and that did not change since
_last_shown = {}


def show(stream=None, precision=None, _at_exit=False):
    """Prints each profiled function's table (to its own stream, given to
    profile(), else `stream`, else stdout). Functions that never ran are
    left out. At exit, tables that show() printed and that did not change
    are left out too, and a stream the program closed skips its own tables
    only (it stopped every table after it)."""
    by_key = {(c.co_filename, c.co_firstlineno): i for c, i in _profiled.items()}
    for fres in results():
        if not any(r["occurrences"] for r in fres["rows"]):
            continue
        key = (fres["filename"], fres["first_line"])
        if _at_exit and _last_shown.get(key) == fres["rows"]:
            continue
        _last_shown[key] = fres["rows"]
        info = by_key.get((fres["filename"], fres["first_line"]), {})
        out = stream or info.get("stream") or sys.stdout
        text = format_function(fres, precision if precision is not None else info.get("precision", 1))
        try:
            out.write(text)
        except (ValueError, OSError):  # closed
            if not _at_exit:
                raise
            continue
        try:
            out.flush()
        except (AttributeError, ValueError, OSError):
            pass


def reset(func=None):
    """Forgets the rows of `func` (a decorated function, or its code), or of all."""
    if func is None:
        _core._lines_reset()
        return
    code = getattr(inspect.unwrap(func), "__code__", func)
    _core._lines_reset(code)


_shown_at_exit = False


def _show_at_exit():
    global _shown_at_exit
    if _shown_at_exit:
        return
    _shown_at_exit = True
    try:
        show(_at_exit=True)
    except (ValueError, OSError):  # stdout closed at exit: nothing to print to
        pass


# ---- running a script: python -m heaptrail.lines / heaptrail lines --------------

def _compile_script(script):
    """The script's code; a missing file, a syntax error or null bytes are one line (OSError or
    ValueError, which both command lines print as `heaptrail: error: ...`), not a traceback."""
    import os

    if not os.path.isfile(script):
        raise OSError(2, "no such script", script)
    with open(script, "rb") as f:
        source = f.read()
    try:
        return compile(source, script, "exec")
    except SyntaxError as e:   # null bytes too, since 3.11.4: with no line number
        where = f"{script}:{e.lineno}" if e.lineno is not None else script
        raise ValueError(f"{where}: syntax error: {e.msg}") from None
    except ValueError as e:   # null bytes
        raise ValueError(f"{script}: {e}") from None


def run_script(script, argv, stream=None, precision=1, rss=False, json_path=None, code=None):
    """Runs `script` (its compiled `code`, when given) as __main__ with `profile` in builtins;
    prints the tables (and writes --json) afterwards, also when it raised (its traceback
    first, as Python prints it); returns the script's exit status."""
    import builtins
    import os
    import types

    global _shown_at_exit
    if code is None:
        code = _compile_script(script)
    _core._lines_set_rss(rss)
    _ensure_tracing()
    decorator = functools.partial(profile, stream=stream, precision=precision)
    old_argv, old_path, had = sys.argv, list(sys.path), hasattr(builtins, "profile")
    old_profile = getattr(builtins, "profile", None)
    old_main = sys.modules.get("__main__")
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = builtins
    builtins.profile = decorator
    sys.argv = [script, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    sys.modules["__main__"] = main
    status = 0
    try:
        exec(code, main.__dict__)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException as e:   # the script's own failure: its traceback, then the tables
        import traceback

        # from the script's first frame, as `python script.py` prints it (not this exec's)
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        sys.argv = old_argv
        sys.path[:] = old_path
        if old_main is not None:
            sys.modules["__main__"] = old_main
        if had:
            builtins.profile = old_profile
        else:
            del builtins.profile
    _shown_at_exit = True  # shown here, not again at exit
    show(stream=stream, precision=precision)
    if json_path is not None:
        write_file(json_path, json.dumps(results(), indent=1))   # made before the file is opened
    return status


def add_arguments(parser):
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    parser.add_argument("--precision", type=int, default=1, help="digits after the point (default 1)")
    parser.add_argument("--rss", action="store_true", help="Mem usage column from RSS, not traced memory")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the tables to FILE, not stdout")


def run_args(args):
    if not 0 <= args.precision <= 20:   # checked before the script runs, not in its tables
        raise ValueError("--precision must be between 0 and 20, not %d" % args.precision)
    code = _compile_script(args.script)   # before -o is opened: a typo must not empty it
    import os

    for out in (args.output, args.json):   # `lines -o app.py app.py` emptied the script
        if out is not None and os.path.exists(out) and os.path.samefile(out, args.script):
            raise ValueError(f"{out}: that is the input file {args.script}: write the output elsewhere")
    stream = open(args.output, "w") if args.output else None
    try:
        return run_script(args.script, args.args, stream=stream, precision=args.precision,
                          rss=args.rss, json_path=args.json, code=code)
    finally:
        if stream is not None:
            stream.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m heaptrail.lines",
                                     description="Line-by-line memory profile of a script's @profile functions.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_args(args)
    except (OSError, ValueError, _core.Error) as e:
        msg = "%s: %s" % (e.strerror, e.filename) if isinstance(e, OSError) and e.filename else str(e)
        print("heaptrail: error: " + msg, file=sys.stderr)
        return 1


# ---- memory_profiler's memory_usage --------------------------------------------

_MEMORY_FIELD = {None: "rss", "psutil": "rss", "posix": "rss", "psutil_pss": "pss",
                 "psutil_uss": "uss"}

# The sampler of memory_usage((f, args, kw)): a child process reading the parent's memory
# (proc.c) every interval until told to stop, as memory_profiler's; a thread of ours would
# allocate inside the measured process.
_SAMPLER = r"""
import select, sys, time
sys.path.insert(0, sys.argv[4])
from heaptrail import _core
pid, interval, field, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], []
def sample():
    out.append((getattr(_core.proc_memory(pid), field) or 0, time.time()))
sample()
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    stop = select.select([sys.stdin], [], [], interval)[0]
    sample()
    if stop:
        break
sys.stdout.write("".join("%d %r\n" % s for s in out))
"""


def _sample(pid, field):
    return (getattr(_core.proc_memory(pid), field) or 0, _time.time())


def _run_sampled(f, args, kw, interval, field):
    import os
    import subprocess

    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", _SAMPLER, str(os.getpid()), repr(interval),
                              field, home], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        if child.stdout.readline() != "ready\n":
            raise _core.Error("memory_usage: the sampler process did not start")
        returned = f(*args, **kw)
        out, _ = child.communicate("stop\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    samples = []
    for line in out.splitlines():
        value, when = line.split()
        samples.append((int(value), float(when)))
    return samples, returned


def memory_usage(proc=-1, interval=.1, timeout=None, timestamps=False, include_children=False,
                 multiprocess=False, max_usage=False, retval=False, stream=None, backend=None,
                 max_iterations=None):
    """memory_profiler's memory_usage: the memory of a process in MiB, sampled every
    ``interval`` seconds. ``proc`` is -1 (this process), a pid, a ``subprocess.Popen`` (until
    it exits) or a function to run: ``f``, ``(f,)``, ``(f, args)`` or ``(f, args, kw)``, run
    once here while a child process samples this one. Without ``timeout`` a pid gets one
    sample; with it, ``timeout / interval``. ``max_usage`` gives the largest sample,
    ``timestamps`` ``(MiB, time)`` pairs, ``retval`` ``(samples, f's result)``, ``stream``
    "MEM <MiB> <time>" lines instead of a list. ``backend``: RSS ('psutil', 'posix', None), PSS
    ('psutil_pss'), USS ('psutil_uss'), read from /proc by heaptrail's C reader.

    Differences from memory_profiler: a function runs once (memory_profiler runs it again
    with a tenth of the interval while it got fewer than 5 samples); ``include_children``,
    ``multiprocess`` and the 'tracemalloc' backend are not supported (ValueError: for traced
    bytes use heaptrail.tracer); ``max_iterations`` is accepted and has no effect."""
    if backend not in _MEMORY_FIELD:
        raise ValueError("memory_usage: backend must be one of psutil, psutil_pss, psutil_uss, "
                         "posix, not %r (traced bytes: heaptrail.tracer)" % (backend,))
    if include_children or multiprocess:
        raise ValueError("memory_usage: include_children and multiprocess are not supported")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise ValueError("memory_usage: interval must be a number > 0, not %r" % (interval,))
    field = _MEMORY_FIELD[backend]
    if stream is not None:
        timestamps = True
    returned = None
    if callable(proc) or isinstance(proc, (list, tuple)):
        target = (proc,) if callable(proc) else tuple(proc)
        if not 1 <= len(target) <= 3 or not callable(target[0]):
            raise ValueError("memory_usage: proc must be f, (f,), (f, args) or (f, args, kw)")
        f, args, kw = (target + ((), {}))[:3] if len(target) < 3 else target
        samples, returned = _run_sampled(f, tuple(args), dict(kw), float(interval), field)
    elif hasattr(proc, "poll") and hasattr(proc, "pid"):  # subprocess.Popen
        samples, left = [], None if timeout is None else max(1, round(timeout / interval))
        while left is None or left > 0:
            samples.append(_sample(proc.pid, field))
            left = None if left is None else left - 1
            if proc.poll() is not None:
                break
            _time.sleep(interval)
    else:
        pid = None if proc == -1 else int(proc)
        n = 1 if timeout is None else max(1, round(timeout / interval))
        samples = []
        for k in range(n):
            if k:
                _time.sleep(interval)
            samples.append(_sample(pid, field))
    mib = [(value / MIB, when) for value, when in samples]
    if stream is not None:
        for value, when in mib:
            stream.write("MEM {0:.6f} {1:.4f}\n".format(value, when))
        result = []
    elif max_usage:
        result = max(value for value, _ in mib)
    else:
        result = mib if timestamps else [value for value, _ in mib]
    return (result, returned) if retval else result


# ---- IPython: %memit, %%memit, %mprun ---------------------------------------------

# memory_profiler's leading options: %memit -r<R> -t<T> -i<I> -c -o -q, %mprun -f F -T FILE -c -r
_MAGIC_WORD = re.compile(r"\s*(\S+)")


def _magic_options(line, flags, valued):
    """({letter: True, or [values]}, the rest of line): the leading options of a magic's line,
    as IPython's parse_options reads them (-oq together; -r3 or -r 3)."""
    opts = {}
    while True:
        m = _MAGIC_WORD.match(line)
        word = m.group(1) if m else ""
        if len(word) < 2 or word[0] != "-" or not word[1].isalpha():
            return opts, line.strip()  # the statement (a negative number is not an option)
        line = line[m.end():]
        if word[1] in valued:
            value = word[2:]
            if not value:
                m = _MAGIC_WORD.match(line)
                if m is None:
                    raise ValueError("option %s needs a value" % word)
                value, line = m.group(1), line[m.end():]
            opts.setdefault(word[1], []).append(value)
        elif all(c in flags for c in word[1:]):
            opts.update((c, True) for c in word[1:])
        else:
            raise ValueError("unknown option %s (options: %s)"
                             % (word, " ".join("-" + c for c in flags + valued)))


def _memit(ip, line, cell=None):
    # memory_profiler's %memit: options first; in a cell the line is setup, run but not
    # measured; increment is how far memory rose above the start (the peak's rise, not what
    # stayed); the result is returned only with -o (IPython would show it as Out[n]).
    opts, stmt = _magic_options(line, "coq", "rti")
    setup, code = (stmt, cell) if cell is not None else (None, stmt)
    try:
        repeat = max(1, int(opts.get("r", ["1"])[-1]))
    except ValueError:
        raise ValueError("%memit -r needs a number, not %r" % opts["r"][-1]) from None
    _ensure_tracing()
    if setup:
        ip.ex(setup)
    peaks, retained = [], []
    for _ in range(repeat):
        cur0, _, _, traced0 = _core._lines_counters(True)
        ip.run_cell(code) if cell is not None else ip.ex(code)
        cur1, _, peak, _ = _core._lines_counters()
        peaks.append((traced0 + (peak - cur0), peak - cur0))
        retained.append(cur1 - cur0)
    best = max(range(repeat), key=lambda k: peaks[k][0])
    result = {"peak": peaks[best][0], "increment": peaks[best][1], "retained": retained[best]}
    if "q" not in opts:
        print("peak memory: %.2f MiB, increment: %.2f MiB" % (result["peak"] / MIB,
                                                               result["increment"] / MIB))
    return result if "o" in opts else None


def _mprun(ip, line):
    opts, stmt = _magic_options(line, "cr", "fT")
    funcs = [ip.ev(name) for name in opts.get("f", [])]
    if not funcs or not stmt:
        raise ValueError("usage: %mprun -f func [-f func ...] statement")
    codes = []
    for f in funcs:
        f = inspect.unwrap(f)
        if not hasattr(f, "__code__"):
            raise TypeError("%mprun -f needs a function, not %s" % type(f).__name__)
        _register(f, None, 1)
        _core._lines_reset(f.__code__)
        codes.append(f.__code__)
    prev = _enter()
    try:
        ip.ex(stmt)
    finally:
        _leave(prev)
    wanted = {(c.co_filename, c.co_firstlineno) for c in codes}
    res = [r for r in results() if (r["filename"], r["first_line"]) in wanted]
    text = format_results(res, precision=1)
    print(text, end="")
    if opts.get("T"):  # memory_profiler's -T FILE: the table written to FILE too
        with open(opts["T"][-1], "w", encoding="utf-8") as f:
            f.write(text)
        print("\n*** Profile printout saved to text file %s. " % opts["T"][-1])
    return res if "r" in opts else None  # -r: the results (memory_profiler's profiler)


def load_ipython_extension(ip):
    """%load_ext heaptrail: %memit, %%memit and %mprun."""
    def memit(line, cell=None):
        return _memit(ip, line, cell)

    def mprun(line):
        return _mprun(ip, line)

    ip.register_magic_function(memit, "line_cell", "memit")
    ip.register_magic_function(mprun, "line", "mprun")


if __name__ == "__main__":
    # run the imported module's main, so `from heaptrail import profile` in
    # the script and this entry point share one registry
    from heaptrail.lines import main as _main
    sys.exit(_main())
