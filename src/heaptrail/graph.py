"""Graph views over a heap snapshot: referrers, paths to roots, dominators, cycles, DOT.

``GraphViews`` is a mixin inherited by :class:`heaptrail.heap.Snapshot`.  All the work is done
in C (``_core/graph.c``); this module only converts arguments and formats small results.
"""


class GraphViews:
    """Mixin with the graph views of a snapshot (filled in by the graph engineer)."""
