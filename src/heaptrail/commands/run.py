"""`heaptrail run [-o FILE] [options] script.py ARGS | -m module ARGS | -c CODE`:
runs a program as Python would (its own argv, __name__ == "__main__", its exit
code, stdin/stdout untouched) while every allocation is streamed to a capture
file; at the end a short report goes to stderr."""
import argparse
import builtins
import os
import re
import sys
import threading
import types

from heaptrail.cli import CommandError, note, program_starts
from heaptrail.commands._script import compile_script, compile_source
from heaptrail.commands._snapshots import number, refuse_overwriting

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0}
_MAX_SAMPLE = 2**40
_SIZES = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30}


def interval(text):
    """'10ms', '0.5s', '200us', '0.01' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ns|us|ms|s|)\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (say 10ms, 0.5s)")
    v = float(m.group(1)) * _UNITS[m.group(2)]
    if v < 0.001 or v > 3600:
        raise ValueError(f"interval must be between 1ms and 1h, not {text!r}")
    return v


interval.__name__ = "interval"


def size(text):
    """'524288', '512k', '1MiB' -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZES or int(m.group(1)) <= 0:
        raise ValueError(f"not a positive size in bytes: {text!r}")
    value = int(m.group(1)) * _SIZES[m.group(2).lower()]
    if value > _MAX_SAMPLE:   # the C side takes 64 bits unchecked: 16777216g would wrap to 0, "every one"
        raise ValueError(f"sample size above 1 TiB: {text!r}")
    return value


size.__name__ = "size"


frames = number("frames", lo=1, hi=65535)


class RunCommand:
    name = "run"
    help = "run a Python program and capture every allocation to a file"

    def prepare_parser(self, parser):
        parser.add_argument("-o", "--output", metavar="FILE",
                            help="capture file (default heaptrail-<program>-<pid>.htcap here)")
        parser.add_argument("--sample", type=size, default=None, metavar="BYTES",
                            help="record a sample of the allocations, one per BYTES on average "
                                 "(weighted: totals stay unbiased) instead of every one")
        parser.add_argument("--interval", type=interval, default=0.01, metavar="TIME",
                            help="memory sample period (default 10ms)")
        parser.add_argument("--follow-fork", action="store_true",
                            help="capture child processes too (os.fork, multiprocessing, "
                                 "subprocess running Python) into FILE.<pid>")
        parser.add_argument("--frames", type=frames, default=128, metavar="N",
                            help="frames kept per stack (default 128)")
        parser.add_argument("--quiet", action="store_true", help="no report at the end")
        parser.add_argument("--lines", action="store_true",
                            help="line-by-line profile of the functions decorated with @profile "
                                 "(memory_profiler's table; `profile` needs no import), "
                                 "instead of a capture file")
        parser.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE ARGS",
                            help="run a module as python -m does")
        parser.add_argument("-c", dest="code", nargs=argparse.REMAINDER, metavar="CODE ARGS",
                            help="run code as python -c does")
        parser.add_argument("target", nargs=argparse.REMAINDER, metavar="script.py ARGS")

    def run(self, args):
        kind, what, argv = _target(args)
        program_starts()  # before -m's find_spec imports the program's package
        if args.lines:
            if kind != "script":
                raise CommandError("--lines profiles a script: heaptrail run --lines script.py ARGS")
            unused = [o for o, v in (("-o", args.output), ("--sample", args.sample),
                                     ("--follow-fork", args.follow_fork)) if v]
            if unused:   # they were silently ignored: `run --lines -o t.txt` wrote no t.txt
                raise CommandError(f"--lines writes no capture: {', '.join(unused)} do not apply "
                                   "(heaptrail lines -o FILE writes its tables to a file)")
            from heaptrail import lines
            return lines.run_script(what, argv)
        spec, compiled = None, False
        if kind == "script" and _is_archive(what):   # python DIR or python app.pyz: its __main__
            kind = "archive"
            code, spec = _archive_code(what)
            label = os.path.splitext(os.path.basename(os.path.abspath(what)))[0]
        elif kind == "script":
            # as python: the code's file name and __file__ are absolute (a program that
            # chdirs can still find its data beside __file__; tracebacks name the real file)
            code = _compiled_code(what)
            compiled = code is not None
            if not compiled:
                code = compile_script(os.path.abspath(what))
            label = os.path.splitext(os.path.basename(what))[0]
        elif kind == "code":
            code = compile_source(what, "<string>")
            label = "c"
        else:
            code, spec = _module_code(what)
            label = what.rsplit(".", 1)[-1]
        if args.output == "":   # not the default name in its place
            raise CommandError("-o needs a file name")
        out = args.output or f"heaptrail-{_safe(label)}-{os.getpid()}.htcap"
        refuse_overwriting(out, what if kind in ("script", "archive") else spec and spec.origin)
        out_dir = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(out_dir):
            raise CommandError(f"{out}: no such directory {out_dir}")

        from heaptrail import run as capture_run
        import heaptrail
        import heaptrail.capture  # noqa: F401 - imported now, not traced inside the program
        heaptrail.mark  # noqa: B018 - bound now (heaptrail.marks), not on the program's first call
        main = _main_module(kind, what, spec, compiled)
        pid = os.getpid()
        capture_run.set_base(_run_program.__code__)   # stacks start at the program's frames
        # FILE.<pid> files already there are an earlier run's children (unless rewritten):
        # not this run's (file times are too coarse to tell them apart by age)
        earlier = {k: _mtime_ns(k) for k in capture_run.children(out)}
        saved = _enter_program(kind, what, argv, main)   # before the capture: not its rows
        failed = None
        try:
            capture_run.start(out, interval=args.interval, sample=args.sample, frames=args.frames,
                              follow_fork=args.follow_fork)
            try:
                status = _run_program(code, main)
            finally:
                # the program's globals are still alive here: what they hold is
                # "still allocated at exit"
                try:
                    written = capture_run.stop()
                except OSError as e:   # the program removed the file, or the disk filled up
                    written, failed = None, e
        finally:
            _leave_program(saved)
        del main
        if os.getpid() != pid:   # a forked child of the program came back here: exit quietly
            return status
        if failed is not None:   # one line, and the program's own status when it failed
            note(f"heaptrail: error: the capture {out} could not be completed: "
                 f"{failed.strerror or failed}")
            return status or 1
        if not args.quiet:
            _report(written or os.path.abspath(out), args.follow_fork, earlier)
        return status


def _target(args):
    chosen = [k for k in ("module", "code") if getattr(args, k) is not None]
    if len(chosen) > 1:
        raise CommandError("give one of script.py, -m MODULE or -c CODE")
    if args.module is not None:
        if not args.module or args.target:
            raise CommandError("-m needs a module name" if not args.module else
                               "give one of script.py, -m MODULE or -c CODE")
        return "module", args.module[0], args.module[1:]
    if args.code is not None:
        if not args.code or args.target:
            raise CommandError("-c needs the code to run" if not args.code else
                               "give one of script.py, -m MODULE or -c CODE")
        return "code", args.code[0], args.code[1:]
    if args.target[:1] == ["--"]:   # `run -o F -- script.py ARGS`, as `heaptrail snapshot` takes it
        args.target = args.target[1:]
    if not args.target:
        raise CommandError("nothing to run: give script.py, -m MODULE or -c CODE")
    if args.target[0].startswith("-") and args.target[0] != "-":
        raise CommandError(f"unknown option {args.target[0]} (options go before the script)")
    return "script", args.target[0], args.target[1:]


def _safe(label):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label) or "program"


def _module_code(name):
    """(code, spec) of module `name` as python -m finds it (a package runs
    its __main__)."""
    import importlib.util
    # python -m looks in the current directory first; the installed `heaptrail` script's
    # sys.path[0] is its bin directory, where `run -m pkg.mod` found no pkg
    sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(name + ".__main__")
        if spec is None and importlib.util.find_spec(name) is not None:   # python -m's words
            raise CommandError(f"no module named {name}.__main__: {name!r} is a package and cannot be run")
    except (ImportError, ValueError) as e:
        raise CommandError(f"no module named {name!r} ({e})")
    finally:
        sys.path.remove(os.getcwd())
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
        raise CommandError(f"no module named {name!r}")
    try:
        code = spec.loader.get_code(spec.name)
    except SyntaxError as e:
        where = f"{e.filename}:{e.lineno}" if e.lineno is not None else e.filename
        raise CommandError(f"{where}: syntax error: {e.msg}")
    except ImportError as e:
        raise CommandError(f"cannot run module {name!r}: {e}")
    if code is None:
        raise CommandError(f"no code to run in module {name!r}")
    return code, spec


def _compiled_code(path):
    """The code of a compiled file (python runs prog.pyc too: its first bytes are
    importlib's magic number), or None for a source file."""
    import importlib.machinery
    import importlib.util

    try:
        with open(path, "rb") as f:
            if f.read(len(importlib.util.MAGIC_NUMBER)) != importlib.util.MAGIC_NUMBER:
                return None
    except OSError:
        return None   # compile_script says what is wrong with it
    loader = importlib.machinery.SourcelessFileLoader("__main__", os.path.abspath(path))
    try:
        return loader.get_code("__main__")
    except (ImportError, EOFError, ValueError, TypeError, OSError) as e:
        raise CommandError(f"{path}: bad compiled file: {e}")


def _is_archive(path):
    """A directory or zip file python runs by its __main__ module."""
    import zipfile

    try:
        return os.path.isdir(path) or (os.path.isfile(path) and zipfile.is_zipfile(path))
    except OSError:
        return False


def _archive_code(path):
    """(code, spec) of the __main__ module of a directory or zip file, found on
    it alone as python finds it (it becomes sys.path[0] when the program runs)."""
    import importlib.machinery

    where = os.path.abspath(path)
    try:
        spec = importlib.machinery.PathFinder.find_spec("__main__", [where])
        code = spec.loader.get_code("__main__") if spec is not None and spec.loader is not None else None
    except SyntaxError as e:
        raise CommandError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}")
    except (ImportError, OSError, ValueError) as e:
        raise CommandError(f"{path}: cannot run its __main__ module: {e}")
    if code is None:
        raise CommandError(f"{path}: can't find a __main__ module in it")
    return code, spec


def _enter_program(kind, what, argv, main):
    """Makes the process look as python makes it for the program (sys.argv,
    sys.path[0], __main__); returns what _leave_program puts back."""
    saved = sys.argv, list(sys.path), sys.modules.get("__main__")
    sys.argv = [main.__dict__.get("__file__", what) if kind == "module" else what, *argv]
    if kind == "code":
        sys.argv[0] = "-c"
    # python: the script's real directory, '' for -c (the cwd, whatever it becomes), the cwd for -m
    sys.path.insert(0, os.path.dirname(os.path.realpath(what)) if kind == "script" else
                    os.path.abspath(what) if kind == "archive" else
                    "" if kind == "code" else os.getcwd())
    sys.modules["__main__"] = main
    return saved


def _leave_program(saved):
    sys.argv, sys.path[:] = saved[0], saved[1]
    if saved[2] is not None:
        sys.modules["__main__"] = saved[2]


def _run_program(code, main):
    """Runs the program's code in module `main`; returns its exit status as
    Python would."""
    status = 0
    try:
        exec(code, main.__dict__)
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException:  # the program's own failure: its traceback is its output
        status = _program_failed()
    # python waits for the non-daemon threads however the main thread ended (sys.exit,
    # an exception): their allocations belong in the capture
    try:
        _join_threads()
    except SystemExit as e:   # a signal handler of the program's, while waiting
        status = _exit_status(e)
    except BaseException:     # Ctrl-C while waiting
        status = _program_failed()
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - the program may have closed its stdout
        pass
    return status


def _program_failed():
    """Prints the exception being handled as python would (without heaptrail's
    frames); returns the exit status: 130 for Ctrl-C, else 1."""
    etype, value, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if value is not None:
        value.__traceback__ = tb   # the default hook prints the exception's own traceback
    try:
        sys.excepthook(etype, value, tb)
    except Exception:  # noqa: BLE001 - a broken excepthook still exits 1
        pass
    return 130 if isinstance(value, KeyboardInterrupt) else 1


def _main_module(kind, what, spec, compiled=False):
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    main.__annotations__ = {}
    if kind == "script":
        import importlib.machinery
        main.__file__ = os.path.abspath(what)   # absolute, as python gives it since 3.9
        main.__cached__ = None
        loader = importlib.machinery.SourcelessFileLoader if compiled else importlib.machinery.SourceFileLoader
        main.__loader__ = loader("__main__", main.__file__)
    elif kind in ("module", "archive"):
        main.__spec__ = spec
        main.__loader__ = spec.loader
        main.__package__ = spec.parent
        if spec.has_location:
            main.__file__ = spec.origin
            main.__cached__ = spec.cached
    return main


def _exit_status(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        if not -2**63 <= e.code < 2**63:   # python: too big for a C long is -1, exit status 255
            return 255
        return e.code & 0xFF
    note(str(e.code))
    return 1


def _join_threads():
    """Python waits for the program's non-daemon threads before it ends: so
    does the capture, to see their allocations."""
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()


def _mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _report(path, follow, earlier):
    from heaptrail import capture, run as capture_run

    try:
        text = capture.summary_text(path)
    except Exception as e:  # noqa: BLE001 - the program ran; its capture is kept
        note(f"heaptrail: capture written to {path}, but it cannot be summarized: {e}")
        return
    note(text)
    kids = [k for k in capture_run.children(path) if earlier.get(k) != _mtime_ns(k)] if follow else []
    if kids:
        note(f"child processes: {len(kids)} captures ({', '.join(os.path.basename(k) for k in kids[:8])}"
             f"{' ...' if len(kids) > 8 else ''}); together: heaptrail summary {path} --children")
    note(f"capture: {path}\n  heaptrail summary {path}\n  heaptrail flamegraph {path} -o flame.html\n"
         f"  heaptrail plot {path} -o memory.svg")


COMMAND = RunCommand
