"""heaptrail: a memory profiler and leak hunter for Python, with engines in C.

The names below are loaded on first use, so `import heaptrail` stays cheap and
never starts an engine by itself.
"""
from heaptrail._core import Error as HeaptrailError

__version__ = "0.1.0"

# public name -> module that defines it
_FUNCTIONS = {
    "sizeof": "heaptrail.size",
    "deepsize": "heaptrail.size",
    "deepsize_detail": "heaptrail.size",
    "snapshot": "heaptrail.heap",
    "load": "heaptrail.heap",
    "mark": "heaptrail.marks",
    "profile": "heaptrail.lines",
}
# submodules reachable as attributes (heaptrail.process.memory() ...)
_SUBMODULES = {"process", "size", "heap", "graph", "tracer", "tracemalloc", "tracesnap", "cli", "capture",
               "pympler", "objgraph", "garbage", "leaks", "run", "lines"}

__all__ = ["HeaptrailError", "__version__", *_FUNCTIONS, *sorted(_SUBMODULES)]


def __getattr__(name):
    import importlib

    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module("heaptrail." + name)
    else:
        raise AttributeError(f"module 'heaptrail' has no attribute {name!r}")
    globals()[name] = value
    return value


def load_ipython_extension(ip):
    """%load_ext heaptrail: %memit, %%memit and %mprun (heaptrail.lines)."""
    from heaptrail.lines import load_ipython_extension as load
    load(ip)


def __dir__():
    return sorted(set(globals()) | set(__all__))
