"""heaptrail's bootstrap for interpreters started under `heaptrail run
--follow-fork` (multiprocessing spawn, subprocess running Python): this
directory is put first on PYTHONPATH by the parent, so this module is the
`sitecustomize` Python imports at start. When HEAPTRAIL_CAPTURE is set it
starts a capture into $HEAPTRAIL_CAPTURE.<pid>; then it steps aside (this
directory leaves sys.path) and imports the next `sitecustomize`, if any, so
the program sees its own. Nothing is installed anywhere. A failure never
stops the program: it runs uncaptured."""
import os
import sys


def _heaptrail_bootstrap():
    here = os.path.dirname(os.path.abspath(__file__))
    while here in sys.path:
        sys.path.remove(here)
    base = os.environ.get("HEAPTRAIL_CAPTURE")
    if base:
        added = None
        try:
            try:
                from heaptrail import run
            except ImportError:   # heaptrail not on this interpreter's path: the copy we came with
                added = os.path.dirname(os.path.dirname(here))
                sys.path.append(added)
                from heaptrail import run
            run._start_child(base)
        except Exception as e:  # noqa: BLE001 - the program must run anyway
            print(f"heaptrail: warning: not capturing this process ({os.getpid()}): {e}", file=sys.stderr)
        finally:
            if added is not None and added in sys.path:
                sys.path.remove(added)
    me = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401 - the next one on sys.path, if any
    except ImportError as e:
        if e.name != "sitecustomize":
            raise
        if me is not None:
            sys.modules["sitecustomize"] = me


_heaptrail_bootstrap()
