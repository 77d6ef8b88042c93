"""pympler's API under heaptrail: same names, signatures and output shapes, computed by
heaptrail's C engines.

    from heaptrail.pympler import asizeof, muppy, summary, refbrowser
    from heaptrail.pympler.classtracker import ClassTracker

Modules: :mod:`asizeof` (deep and flat sizes), :mod:`muppy` (the list of live objects, sized,
filtered, sorted), :mod:`summary` (objects per type: summarize, get_diff, print_),
:mod:`refbrowser` (a console tree of referents), :mod:`classtracker` and
:mod:`classtracker_stats` (instances of chosen classes tracked over snapshots, text and HTML
reports), :mod:`tracker` (SummaryTracker: what changed per type since the last summary). Where heaptrail's rules differ from pympler's, each module's docstring says how.
"""
__all__ = ["asizeof", "muppy", "summary", "refbrowser", "classtracker", "classtracker_stats",
           "tracker"]


def __getattr__(name):
    import importlib

    if name in __all__:
        value = importlib.import_module("heaptrail.pympler." + name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'heaptrail.pympler' has no attribute {name!r}")
