"""`heaptrail snapshot -o FILE -- script.py ARGS`: runs a script as __main__ and saves a heap
snapshot when it ends (and one at each heaptrail.mark() call)."""
import argparse
import builtins
import os
import sys
import types

from heaptrail.cli import CommandError, note as say, program_starts
from heaptrail.commands._script import compile_script
from heaptrail.commands._snapshots import refuse_overwriting
from heaptrail import heap
from heaptrail._format import human_bytes
from heaptrail.heap import _take, _set_mark_output


class SnapshotCommand:
    name = "snapshot"
    help = "run a Python script and save a heap snapshot of it when it ends"

    def prepare_parser(self, parser):
        parser.add_argument("-o", "--output", required=True, metavar="FILE", action=_Once,
                            help="snapshot file to write (marks write FILE.<n>.<label>)")
        parser.add_argument("script", help="the Python script to run as __main__")
        parser.add_argument("args", nargs="*", help="its arguments (put them after --)")

    def run(self, args):
        script = args.script
        code = compile_script(script)
        if not args.output:
            raise CommandError("-o needs a file name")
        # absolute now: the program may chdir before the snapshot is written at its end
        output = os.path.abspath(args.output)
        out_dir = os.path.dirname(output)
        if not os.path.isdir(out_dir):
            raise CommandError(f"{args.output}: no such directory {out_dir}")
        if os.path.isdir(output):   # found before the program runs, not after
            raise CommandError(f"{args.output}: is a directory")
        refuse_overwriting(args.output, script)
        saved_main = sys.modules.get("__main__")
        pid = os.getpid()
        try:
            status = _run_as_main(code, script, args.args, output)
            if os.getpid() != pid:
                # a child the program forked came back here: the snapshot is the parent's to
                # write (the child's would overwrite it, or be overwritten)
                return status
            snap = _take()  # while the program's __main__ is still in sys.modules
            marks = len(heap._marks)
        finally:
            sys.modules["__main__"] = saved_main
            _set_mark_output(None)
        snap.save(output)   # a failed save leaves the old file whole (_format.replacing)
        note = (f"; {marks} snapshot{'s' if marks != 1 else ''} at heaptrail.mark() beside it "
                f"({args.output}.<n>.<label>)" if marks else "")
        say(f"heaptrail: snapshot of {snap.objects} objects ({human_bytes(snap.total_size)} of "
            f"heap) written to {args.output} ({human_bytes(os.path.getsize(output))}){note}")
        return status


class _Once(argparse.Action):
    """-o given twice is refused, not the last one kept: `snapshot -o a.htsnap s.py -o x`
    meant -o x for the script (its options go after --), and would have silently written x."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"argument {option_string}: given twice (the script's own options go "
                         "after --: heaptrail snapshot -o FILE -- script.py ARGS)")
        setattr(namespace, self.dest, values)


def _run_as_main(code, script, argv, output):
    """Executes code as the __main__ module (left in sys.modules for the snapshot); returns
    the exit status."""
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = builtins
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.modules["__main__"] = main
    sys.argv = [script, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    _set_mark_output(output)
    status = 0
    try:
        program_starts()
        exec(code, main.__dict__)
        _join_threads()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            say(str(e.code))
            status = 1
    except BaseException as e:  # the program's own failure: its traceback is its output
        import traceback  # here: its imports (linecache, tokenize ...) would be in every snapshot

        # from the program's first frame, as `python script.py` prints it: not this exec's,
        # nor _join_threads' (Ctrl-C while the program's threads are waited for)
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        status = 130 if isinstance(e, KeyboardInterrupt) else 1   # as `heaptrail run`
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return status


def _join_threads():
    """Python waits for a program's non-daemon threads before it ends: so does the snapshot
    (as `heaptrail run` does), which would otherwise miss what they build."""
    # as the interpreter's shutdown does: a program that never imported threading started none
    # of its threads (importing it here would put it in the snapshot, as the program's)
    threading = sys.modules.get("threading")
    if threading is None:
        return
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()


COMMAND = SnapshotCommand
