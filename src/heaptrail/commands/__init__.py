"""The CLI's commands: one module each, defining COMMAND (a class).

Add a module's name here to expose its command; order is the order of
`heaptrail --help`.
"""
COMMAND_MODULES = [
    "mem", "run",
    "snapshot", "summary", "diff", "query", "path", "retainers", "cycles", "dot",
    "table", "tree", "stats", "flamegraph", "plot", "export", "leaks", "lines",
]
