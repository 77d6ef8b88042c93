"""heaptrail lines [--precision N] [--rss] [--json FILE] [-o FILE] script.py ARGS:
line-by-line memory profile of the script's @profile functions.

As `python -m memory_profiler script.py`: the script runs as __main__ with
`profile` in builtins (no import needed); each decorated function's table is
printed when the script ends. The engine is heaptrail.lines.
"""
from heaptrail import lines


class LinesCommand:
    name = "lines"
    help = "line-by-line memory profile of a script's @profile functions (memory_profiler's layout)"

    def prepare_parser(self, parser):
        lines.add_arguments(parser)

    def run(self, args):
        return lines.run_args(args)


COMMAND = LinesCommand
