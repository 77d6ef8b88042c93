"""`heaptrail leaks script.py [--runs N] [--warmup N] [--call module:function] [--json]
[--dot out.svg]`: finds what grows from one iteration to the next.

With ``--call``, imports the script as a module (or imports ``module``) and calls the function
``warmup + runs`` times under :func:`heaptrail.leaks.check`. Without it, runs the whole script as
``__main__``; each ``heaptrail.leaks.step()`` the script calls ends one iteration."""
import builtins
import importlib
import importlib.util
import os
import sys
import types

from heaptrail import leaks
from heaptrail.cli import CommandError, program_starts
from heaptrail.commands._script import compile_script
from heaptrail.commands._snapshots import number, refuse_overwriting
from heaptrail.graph import check_dot_output

# bounded: --runs 10**20 is a hang, not a measurement (and past C's 64 bits, a traceback)
_runs = number("runs", hi=100000)
_warmup = number("warmup", hi=100000)


class LeaksCommand:
    name = "leaks"
    help = "run a function or a script's main loop repeatedly and report what leaks"

    def prepare_parser(self, parser):
        parser.add_argument("script", nargs="?",
                            help="the Python script (its main loop calls heaptrail.leaks.step(), "
                                 "or name a function with --call)")
        parser.add_argument("args", nargs="*", help="the script's arguments (after --)")
        parser.add_argument("--runs", type=_runs, default=10,
                            help="measured iterations (10; at most 100000)")
        parser.add_argument("--warmup", type=_warmup, default=2,
                            help="iterations run before measuring (2; at most 100000)")
        parser.add_argument("--call", metavar="[MODULE:]FUNCTION",
                            help="call this function of the script (or of MODULE) repeatedly")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--dot", metavar="FILE",
                            help="write the retention paths as a graph (.svg/.png/.pdf/.dot)")

    def run(self, args):
        if args.runs < 1:
            raise CommandError(f"--runs must be at least 1, not {args.runs}")
        if args.warmup < 0:
            raise CommandError(f"--warmup must be at least 0, not {args.warmup}")
        if args.script is None and (args.call is None or ":" not in args.call):
            raise CommandError("give a script, or --call MODULE:FUNCTION")
        if args.dot:
            out_dir = os.path.dirname(os.path.abspath(args.dot))
            if not os.path.isdir(out_dir):
                raise CommandError(f"{args.dot}: no such directory {out_dir}")
            check_dot_output(args.dot)   # before the runs, not after them
            refuse_overwriting(args.dot, args.script)
        saved_path, saved_argv = list(sys.path), sys.argv
        try:
            if args.script:
                sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
                sys.argv = [args.script, *args.args]
            if args.call:
                report = _check(_function(args.script, args.call), args)
            else:
                report = _run_script(args.script, args.runs, args.warmup)
        finally:
            sys.path[:] = saved_path
            sys.argv = saved_argv
        if args.json:
            print(report.to_json())
        else:
            report.print()
        if args.dot:
            report.render(args.dot)
            print(f"heaptrail: retention paths written to {args.dot}", file=sys.stderr)
        return 0


def _check(func, args):
    """leaks.check of --call's function; its own exception is one line naming where it was
    raised (it was a traceback through heaptrail's frames), Ctrl-C is main's 'interrupted'."""
    try:
        return leaks.check(func, runs=args.runs, warmup=args.warmup)
    except (KeyboardInterrupt, SystemExit, CommandError):
        raise
    except Exception as e:
        import traceback

        where = traceback.extract_tb(e.__traceback__)[-1]
        raise CommandError(f"--call {args.call} raised {type(e).__name__}: {e} "
                           f"({where.filename}:{where.lineno})") from None


def _function(script, spec):
    modname, _, fname = spec.rpartition(":")
    program_starts()
    if modname:
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            raise CommandError(f"--call {spec}: cannot import {modname}: {e}")
    else:
        code = compile_script(script)
        name = os.path.splitext(os.path.basename(script))[0]
        mod = types.ModuleType(name)
        mod.__file__ = os.path.abspath(script)
        mod.__builtins__ = builtins
        sys.modules[name] = mod
        try:
            exec(code, mod.__dict__)
        except SystemExit:
            pass
        except Exception as e:
            raise CommandError(f"{script}: failed while being imported: {type(e).__name__}: {e}")
    func = getattr(mod, fname, None)
    if not callable(func):
        raise CommandError(f"--call {spec}: {mod.__name__} has no function {fname!r}")
    return func


def _run_script(script, runs, warmup):
    """Runs the script as __main__ under a watch driven by heaptrail.leaks.step()."""
    code = compile_script(script)
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = builtins
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    w = leaks.watch(warmup, runs)
    leaks._active = w
    try:
        w.__enter__()
        try:
            program_starts()
            exec(code, main.__dict__)
        except SystemExit:
            pass
        except KeyboardInterrupt:   # Ctrl-C: main's "interrupted", exit 130, not "failed", 1
            w._s.abort()
            raise
        except BaseException as e:
            w._s.abort()
            raise CommandError(f"{script} failed: {type(e).__name__}: {e}")
        if w._s.nsteps == 0 and w._s.report is None:
            w._s.abort()
            raise CommandError(f"{script} never called heaptrail.leaks.step(): call it at the end "
                               "of each iteration of its main loop, or use --call FUNCTION")
        w.__exit__(None, None, None)  # while the script's __main__ is still in sys.modules
        return w.report
    finally:
        leaks._active = None
        sys.modules["__main__"] = saved_main


COMMAND = LeaksCommand
