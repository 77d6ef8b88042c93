"""heaptrail's command line: a list of command classes and main(argv) -> int.

Each command lives in heaptrail/commands/<name>.py and defines one class with
`name`, `help`, `prepare_parser(parser)` and `run(args) -> int`. Errors that
are the user's to fix (HeaptrailError, OSError, ValueError from our own
validation) become one line on stderr and a non-zero exit, never a traceback.
"""
import sys

_BEFORE = frozenset(sys.modules)  # what this module's imports add is heaptrail's (see the end)

import argparse  # noqa: E402
import importlib  # noqa: E402

import heaptrail  # noqa: E402
from heaptrail.commands import COMMAND_MODULES  # noqa: E402

EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A command's own failure: printed as one line, exit code `code`."""

    def __init__(self, message, code=EXIT_ERROR):
        super().__init__(message)
        self.code = code


def _commands(only=None):
    for mod in [only] if only in COMMAND_MODULES else COMMAND_MODULES:
        yield importlib.import_module("heaptrail.commands." + mod).COMMAND


def build_parser(only=None):
    """The parser of every command, or of command `only` alone (each module is named after its
    command): `heaptrail snapshot` runs a program in this process, whose snapshot would
    otherwise hold every command's modules and parsers (a third of an empty script's)."""
    parser = argparse.ArgumentParser(
        prog="heaptrail",
        description="Memory profiler and leak hunter for Python.",
    )
    parser.add_argument("--version", action="version", version="heaptrail " + heaptrail.__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cls in _commands(only):
        cmd = cls()
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.prepare_parser(p)
        p.set_defaults(_command=cmd, _parser=p)
    return parser


def note(text):
    """Prints heaptrail's own text to stderr. The program a command ran (run, snapshot) may
    have closed its stderr, or set it to None: Python then ends quietly with the program's
    status, and so do we, rather than fail on our report with a traceback and exit 1."""
    err = sys.stderr
    if err is None:   # print(file=None) would write to stdout
        return
    try:
        print(text, file=err, flush=True)
    except (OSError, ValueError):   # closed: ValueError; fd 2 closed: OSError
        pass


def _fail(message, code):
    note(f"heaptrail: error: {message}")
    return code


# the modules sys.modules held when main() began (program_starts)
_main_before = None


def program_starts():
    """Called by a command as the program it runs starts: the modules the command line imported
    until then (argparse, gettext ...) are heaptrail's, left out of its snapshots unless the
    program refers to one."""
    if _main_before is not None:
        heaptrail._note_imports(_main_before)


def main(argv=None):
    """Runs the command line; returns the exit code."""
    global _main_before
    _main_before = frozenset(sys.modules)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra[:1] == ["--"] and getattr(args, "script", None) and isinstance(getattr(args, "args", None), list):
            # `snapshot s.py -o F -- -x 1`: argparse closed the script's argument list when it
            # met an option, so what follows -- is left over: it is the script's
            args.args, extra = args.args + extra[1:], []
        if extra:
            # the command's usage, not heaptrail's one line of COMMAND ...; and a script's own
            # options (snapshot, leaks) are the usual cause
            sub = getattr(args, "_parser", parser)
            hint = (" (a script's own arguments go after --)"
                    if any(a.dest == "script" for a in sub._actions) else "")
            sub.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    except SystemExit as e:  # argparse has printed usage or help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if getattr(args, "_command", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    heaptrail._program_base = sys._getframe()
    try:
        return int(args._command.run(args) or 0)
    except BrokenPipeError:  # `heaptrail ... | head`: the reader left, nothing to say
        _silence_stdout()
        return 141
    except CommandError as e:
        return _fail(str(e), e.code)
    except heaptrail.HeaptrailError as e:
        return _fail(str(e), EXIT_ERROR)
    except (OSError, ValueError) as e:
        return _fail(_os_message(e), EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    finally:
        heaptrail._program_base = None
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # `heaptrail ... | head`
            _silence_stdout()
        except (OSError, ValueError, AttributeError):
            pass   # a program run here closed its stdout or set it to None: Python is quiet too


def _silence_stdout():
    """Points stdout at /dev/null so the interpreter's own flush at exit does
    not complain about the closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _os_message(e):
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


heaptrail._note_imports(_BEFORE)
