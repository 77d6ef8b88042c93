"""Reading and compiling the program a command runs (`run`, `snapshot`, `leaks`): a missing
file, a syntax error or null bytes give one clear line (CommandError), not a traceback."""
from heaptrail.cli import CommandError


def compile_source(source, filename):
    try:
        return compile(source, filename, "exec")
    except SyntaxError as e:   # null bytes too, since 3.11.4: with no line number
        where = f"{filename}:{e.lineno}" if e.lineno is not None else filename
        raise CommandError(f"{where}: syntax error: {e.msg}")
    except ValueError as e:   # null bytes
        raise CommandError(f"{filename}: {e}")


def compile_script(script):
    try:
        with open(script, "rb") as f:
            source = f.read()
    except OSError as e:
        raise CommandError(f"{script}: {e.strerror or e}")
    return compile_source(source, script)
