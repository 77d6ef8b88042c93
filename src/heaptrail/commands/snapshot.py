"""`heaptrail snapshot -o FILE -- script.py ARGS`: runs a script as __main__ and saves a heap
snapshot when it ends (and one at each heaptrail.mark() call)."""
import builtins
import os
import sys
import types

from heaptrail.cli import CommandError, program_starts
from heaptrail.commands._script import compile_script
from heaptrail import heap
from heaptrail._format import human_bytes
from heaptrail.heap import _take, _set_mark_output


class SnapshotCommand:
    name = "snapshot"
    help = "run a Python script and save a heap snapshot of it when it ends"

    def prepare_parser(self, parser):
        parser.add_argument("-o", "--output", required=True, metavar="FILE",
                            help="snapshot file to write (marks write FILE.<n>.<label>)")
        parser.add_argument("script", help="the Python script to run as __main__")
        parser.add_argument("args", nargs="*", help="its arguments (put them after --)")

    def run(self, args):
        script = args.script
        code = compile_script(script)
        out_dir = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(out_dir):
            raise CommandError(f"{args.output}: no such directory {out_dir}")
        saved_main = sys.modules.get("__main__")
        try:
            status = _run_as_main(code, script, args.args, args.output)
            snap = _take()  # while the program's __main__ is still in sys.modules
            marks = len(heap._marks)
        finally:
            sys.modules["__main__"] = saved_main
            _set_mark_output(None)
        snap.save(args.output)
        note = (f"; {marks} snapshot{'s' if marks != 1 else ''} at heaptrail.mark() beside it "
                f"({args.output}.<n>.<label>)" if marks else "")
        print(f"heaptrail: snapshot of {snap.objects} objects ({human_bytes(snap.total_size)} of "
              f"heap) written to {args.output} ({human_bytes(os.path.getsize(args.output))}){note}",
              file=sys.stderr)
        return status


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
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:  # the program's own failure: its traceback is its output
        import traceback  # here: its imports (linecache, tokenize ...) would be in every snapshot

        # from the program's first frame, as `python script.py` prints it (not this exec's)
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        status = 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return status


COMMAND = SnapshotCommand
