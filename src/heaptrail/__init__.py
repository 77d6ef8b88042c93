"""heaptrail: a memory profiler and leak hunter for Python, with engines in C.

The names below are loaded on first use, so `import heaptrail` stays cheap and
never starts an engine by itself.
"""
import sys

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
    if name not in _FUNCTIONS and name not in _SUBMODULES:
        raise AttributeError(f"module 'heaptrail' has no attribute {name!r}")
    before = {_name(k) for k in list(sys.modules)}  # two container allocations: no collection
    import gc  # a built-in module

    # an import allocates enough to trigger the collector, which would free the program's
    # young garbage (and run its finalizers) before snapshot(gc_first=False) could see it
    global _young_import_garbage
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import importlib  # not always imported yet (it imports warnings)

        if name in _FUNCTIONS:
            value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        else:
            value = importlib.import_module("heaptrail." + name)
    finally:
        _note_imports(before)
        if was_enabled:
            gc.enable()
    # the import's own cyclic garbage is young: a gc_first snapshot collects it first
    # (heap._take), or its walk would find it, and collect and walk again
    _young_import_garbage = True
    globals()[name] = value
    return value


_young_import_garbage = False
# the modules heaptrail imported for itself (name -> module): a snapshot leaves them out, with
# what only they hold, unless the program refers to one (heap._own_objects)
_own_imports = {}


def _note_imports(before):
    """Notes the modules imported since sys.modules held the names in `before` as heaptrail's
    own (those of its package are its own anyway). A new name for a module that was there
    already (importlib._bootstrap is _frozen_importlib) is not an import."""
    modules = _modules()
    old = {id(module) for name, module in modules if name in before}
    for name, module in modules:
        if (name not in before and id(module) not in old and name not in _own_imports
                and name.partition(".")[0] != "heaptrail"):
            _own_imports[name] = module


def _name(key):
    """sys.modules key as an exact str ("" for a key that is no str): a str subclass's __hash__
    and __eq__ are the program's code, never called by heaptrail."""
    if type(key) is str:
        return key
    return str.__str__(key) if issubclass(type(key), str) else ""


def _modules():
    """sys.modules' (name, value) pairs, each name an exact str (keys that are no str left out)."""
    return [(_name(k), m) for k, m in list(sys.modules.items()) if issubclass(type(k), str)]


# the command line's frame while it runs a command (cli.main): it and every frame below it are
# heaptrail's, left out of snapshots (heap._own_objects)
_program_base = None


def load_ipython_extension(ip):
    """%load_ext heaptrail: %memit, %%memit and %mprun (heaptrail.lines)."""
    from heaptrail.lines import load_ipython_extension as load
    load(ip)


def __dir__():
    return sorted(set(globals()) | set(__all__))
