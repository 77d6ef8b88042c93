"""heaptrail.mark(label): one call, whatever heaptrail is doing to the program.

- under `heaptrail run` (a capture is being written): a marker on the
  capture's timeline, shown by `heaptrail plot` and the flame graph;
- under `heaptrail snapshot -o FILE`: a heap snapshot saved as FILE.<n>.<label>;
- both can hold; with neither, a heap snapshot is taken and returned (as
  heaptrail.heap.mark always did).
Returns the Snapshot when one was taken, else None.
"""


def mark(label="mark"):
    from heaptrail import heap, run

    capturing = run.is_capturing()
    if capturing:
        run.marker(label)
    if not capturing or heap._mark_output is not None:
        return heap.mark(label)
    return None
