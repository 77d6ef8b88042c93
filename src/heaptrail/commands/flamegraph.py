"""heaptrail flamegraph FILE [--peak|--leaks|--total] [-o out.html]: one
self-contained HTML file (no network): the memory-over-time chart above an
interactive flame graph (click to zoom, search, hover for bytes and percent)."""
import html
import json
import os
import re
from importlib import resources

from heaptrail import capture
from heaptrail._format import write_file
from heaptrail.commands._snapshots import refuse_overwriting
from heaptrail.commands.plot import memory_svg


class FlamegraphCommand:
    name = "flamegraph"
    help = "interactive HTML flame graph of a capture (peak, leaks or total)"

    def prepare_parser(self, parser):
        capture.add_file_argument(parser)
        parser.add_argument("-o", "--output", default=None,
                            help="HTML file to write (default: FILE-flamegraph-REPORT.html)")

    def run(self, args):
        cap = capture.load_for_command(args.file)
        out = args.output or f"{os.path.splitext(args.file)[0]}-flamegraph-{args.report}.html"
        refuse_overwriting(out, args.file)
        write_file(out, flamegraph_html(cap, args.report))
        print(f"wrote {out}")
        return 0


def flame_tree(cap, report):
    """The call tree of everything ever allocated, as nested dicts: i node id,
    n name, f file:line, s self bytes in the report, sc self blocks, k
    children. The page computes inclusive values itself, so the same tree
    serves the report and any moment of the timeline."""
    in_report = {t.node: t for t in cap.tree(report)}
    nodes = {}
    root = None
    for t in cap.tree("total"):
        r = in_report.get(t.node)
        d = {"i": t.node, "n": t.function or "all", "s": r.self_bytes if r else 0, "sc": r.self_count if r else 0}
        if t.file is not None:
            d["f"] = f"{t.file}:{t.line}"
        nodes[t.node] = d
        if t.parent is None:
            root = d
        else:
            nodes[t.parent].setdefault("k", []).append(d)
    if root is None:
        return {"i": 0, "n": "all", "s": 0, "sc": 0}
    return root


def timeline(cap, points=64):
    """Live bytes by node at `points` moments: {"t": [ns], "live": [{node: bytes}]}."""
    if cap.duration_ns == 0:
        return {"t": [], "live": []}
    rows = cap.timeline(points)
    return {"t": [t for t, _, _ in rows], "live": [{str(k): v for k, v in live.items()} for _, _, live in rows]}


def tree_json(root):
    """json.dumps(root, separators=(",", ":")) of a flame tree, without
    recursion: a stack can be thousands of frames deep (`heaptrail run
    --frames 5000`), past the recursion limit of the json encoder. Children
    ("k") are always a node's last key (flame_tree adds them last)."""
    out, todo = [], [root]
    while todo:
        x = todo.pop()
        if isinstance(x, str):
            out.append(x)
            continue
        fields = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in x.items() if k != "k")
        kids = x.get("k")
        if not kids:
            out.append("{" + fields + "}")
            continue
        out.append("{" + fields + ',"k":[')
        todo.append("]}")
        for j in range(len(kids) - 1, -1, -1):
            todo.append(kids[j])
            if j:
                todo.append(",")
    return "".join(out)


def flamegraph_html(cap, report):
    template = resources.files("heaptrail").joinpath("templates/flamegraph.html").read_text(encoding="utf-8")
    title = f"{report} of {cap.command or cap.path}"
    data = (f'{{"report":{json.dumps(report)},"tree":{tree_json(flame_tree(cap, report))},'
            f'"timeline":{json.dumps(timeline(cap), separators=(",", ":"))}}}')
    data = data.replace("<", "\\u003c")          # never closes the <script> it sits in
    chart = memory_svg(cap, title="memory over time") if cap.samples() else "<p>(no memory samples)</p>"
    parts = {"__TITLE__": html.escape(title), "__CHART__": chart, "__DATA__": data}
    # one pass, so a marker label or function name can never inject a placeholder
    return re.sub("__(TITLE|CHART|DATA)__", lambda m: parts[m.group(0)], template)


COMMAND = FlamegraphCommand
