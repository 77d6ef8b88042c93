"""The capture's visual views: the flame graph HTML (its data, its
self-containment, and its script run under node with a tiny DOM when node is
installed) and the memory plot (SVG parsed back, PNG through matplotlib)."""
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from heaptrail import _core
from test_capture import EVENTS


@pytest.fixture
def known(tmp_path):
    path = tmp_path / "known.htcap"
    _core._capture_write(str(path), EVENTS + [("marker", 4_500_000, "</script><b>x</b>")], pid=7)
    return str(path)


def _data(page):
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def _flat(node, values, depth=0, out=None):
    """(depth, name, inclusive bytes) of the nodes with bytes, children largest first."""
    out = [] if out is None else out

    def total(n):
        return values(n) + sum(total(k) for k in n.get("k", []))

    out.append((depth, node["n"], total(node)))
    for k in sorted(node.get("k", []), key=lambda k: -total(k)):
        if total(k):
            _flat(k, values, depth + 1, out)
    return out


def test_flamegraph_html(cli, known, tmp_path):
    out = tmp_path / "f.html"
    code, stdout, err = cli("flamegraph", known, "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    data = _data(page)
    assert _flat(data["tree"], lambda n: n["s"]) == [(0, "all", 7500), (1, "main", 7500), (2, "cache", 4000),
                                                     (2, "load", 3500), (3, "parse", 3000)]
    # the timeline: what was live at 64 moments, by node id
    t = data["timeline"]
    assert len(t["t"]) == 64 and t["t"][-1] == 5_000_000
    at = {ts: live for ts, live in zip(t["t"], t["live"])}
    names = {}

    def index(n):
        names[str(n["i"])] = n["n"]
        for k in n.get("k", []):
            index(k)
    index(data["tree"])
    assert {names[k]: v for k, v in at[2_500_000].items()} == {"load": 500, "parse": 3000}
    assert {names[k]: v for k, v in at[3_125_000].items()} == {"load": 500, "parse": 3000, "cache": 4000}
    assert {names[k]: v for k, v in at[5_000_000].items()} == {"main": 100, "load": 500, "cache": 300}
    # self-contained: no scripts, styles or images fetched from anywhere
    assert not re.search(r"<script[^>]+src=|<link|<img|@import|https?://(?!www\.w3\.org/2000/svg)", page)
    # the marker label is escaped in the chart, never closes a script
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page and page.count("</script>") == 2
    code, stdout, err = cli("flamegraph", known, "--leaks", "-o", str(out))
    assert _flat(_data(out.read_text())["tree"], lambda n: n["s"])[:2] == [(0, "all", 900), (1, "main", 900)]


def test_deep_stacks_in_tree_and_flamegraph(cli, tmp_path):
    """A stack 3000 frames deep (`heaptrail run --frames 5000` of a recursive
    program): `tree` walked it, and the flame graph's data was encoded, by
    recursion, and both failed with a RecursionError traceback."""
    depth = 3000
    events = [("frame", 1, "deep.py", "f", 8)] + [("stack", k, k - 1 if k else None, 1) for k in range(depth)]
    path = str(tmp_path / "deep.htcap")
    _core._capture_write(path, events + [("alloc", 0x1000, 100, depth - 1)])
    code, out, err = cli("tree", path)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 + depth
    assert lines[1] == "     100 B 100.0%  f (deep.py:8)"
    assert lines[-1] == "     100 B 100.0%  " + "  " * (depth - 1) + "f (deep.py:8)"
    html = tmp_path / "f.html"
    code, out, err = cli("flamegraph", path, "-o", str(html))
    assert code == 0, err
    data = re.search(r'<script id="data" type="application/json">(.*?)</script>', html.read_text(), re.S).group(1)
    # one chain: "all", then depth nodes of f, each but the last holding the next in "k"
    assert data.count('"n":"f"') == depth and data.count('"k":[') == depth
    assert data.startswith('{"report":"peak","tree":{"i":0,"n":"all","s":0,"sc":0,"k":[{"i":1,"n":"f","s":0')
    assert '"s":100,"sc":1,"f":"deep.py:8"}' + "]}" * depth + ',"timeline":' in data


# the page's script under node, with the few DOM calls it makes stubbed: `code` is the script,
# `flame` the flame graph's element, `els` the others by id
NODE_STUB = r"""
const fs = require("fs");
const page = fs.readFileSync(process.argv[2], "utf8");
const data = page.match(/<script id="data" type="application\/json">([\s\S]*?)<\/script>/)[1];
const code = page.match(/<script>\n("use strict";[\s\S]*?)<\/script>/)[1];
function el(id) {
  return {id, children: [], style: {}, className: "", textContent: id === "data" ? data : "",
          value: "", appendChild(c) { this.children.push(c); }, set innerHTML(v) { this.children = []; }};
}
const els = {};
const flame = el("flame");
global.window = {innerWidth: 1000};
global.document = {
  getElementById: (id) => id === "flame" ? flame : (els[id] = els[id] || el(id)),
  createElement: () => el(""),
};
Object.defineProperty(flame, "textContent", {set() { this.children = []; }, get() { return ""; }});
"""

NODE_DOM = NODE_STUB + r"""
const selectTime = new Function(code + "\nreturn selectTime;")();
const show = () => flame.children.map(d => [d.textContent, d.style.width, d.className.trim()]);
const out = {initial: show()};
flame.children.find(d => d.textContent === "load").onclick();
out.zoomed = show();
els.search.value = "CACHE";
els.search.oninput();
out.search = show();
out.status = els.status.textContent;
selectTime(2.5e6);
out.time = show();
out.timeStatus = els.status.textContent;
console.log(JSON.stringify(out));
"""


def test_flamegraph_script_runs(cli, known, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the flame graph's script is not run")
    out = tmp_path / "f.html"
    assert cli("flamegraph", known, "-o", str(out))[0] == 0
    js = tmp_path / "dom.js"
    js.write_text(NODE_DOM)
    proc = subprocess.run([node, str(js), str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["initial"] == [["all", "100%", "f"], ["main", "100%", "f"], ["cache", "53.333333333333336%", "f"],
                              ["load", "46.666666666666664%", "f"], ["parse", "40%", "f"]]
    # zoomed on load: its ancestors dimmed at full width, load full width, parse 3000/3500
    assert res["zoomed"] == [["all", "100%", "f dim"], ["main", "100%", "f dim"], ["load", "100%", "f"],
                             ["parse", "85.71428571428571%", "f"]]
    assert ["cache", "53.333333333333336%", "f hit"] not in res["search"]   # still zoomed on load
    assert res["status"] == "peak: 7.3 KiB; matched 3.9 KiB (53.3%)"
    # picked on the timeline: live at 2.5 ms (parse 3000 + load 500), zoom reset
    assert res["time"] == [["all", "100%", "f"], ["main", "100%", "f"], ["load", "100%", "f"],
                           ["parse", "85.71428571428571%", "f"]]
    assert res["timeStatus"] == "live at 0.003 s: 3.4 KiB; matched 0 B (0.0%)"


NODE_DEEP = NODE_STUB + r"""
new Function(code)();
const drawn = flame.children.length, last = flame.children[drawn - 1];
last.onclick();                                      // zoom on the deepest frame
els.search.value = "f";
els.search.oninput();
console.log(JSON.stringify({drawn, top: last.style.top, zoomed: flame.children.length,
                            dim: flame.children.filter(d => d.className.includes("dim")).length,
                            status: els.status.textContent}));
"""


def test_flamegraph_script_runs_on_deep_stacks(cli, tmp_path):
    """A stack 20,000 frames deep: the page's script walked the tree by recursion and died
    with "Maximum call stack size exceeded" before drawing anything."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the flame graph's script is not run")
    depth = 20000
    events = [("frame", 1, "deep.py", "f", 8)] + [("stack", k, k - 1 if k else None, 1) for k in range(depth)]
    path = str(tmp_path / "deep.htcap")
    _core._capture_write(path, events + [("alloc", 0x1000, 100, depth - 1)])
    out = tmp_path / "f.html"
    assert cli("flamegraph", path, "-o", str(out))[0] == 0
    js = tmp_path / "deep.js"
    js.write_text(NODE_DEEP)
    proc = subprocess.run([node, str(js), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    res = json.loads(proc.stdout)
    # "all" and every frame, one row each; zoomed on the last, its 20,000 ancestors are dimmed
    assert res["drawn"] == depth + 1 and res["top"] == f"{depth * 18}px"
    assert res["zoomed"] == depth + 1 and res["dim"] == depth
    assert res["status"] == "peak: 100 B; matched 100 B (100.0%)"


def test_plot_svg(cli, known, tmp_path):
    out = tmp_path / "p.svg"
    code, stdout, err = cli("plot", known, "-o", str(out))
    assert code == 0, err
    root = ET.parse(out).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    lines = {p.get("class"): p.get("points").split() for p in root.findall("s:polyline", ns)}
    assert set(lines) == {"rss", "traced"} and len(lines["rss"]) == 3
    ys = [float(p.split(",")[1]) for p in lines["rss"]]
    assert ys[0] > ys[2] > ys[1]                         # 10, 12, 11 MB (y grows downwards)
    ys = [float(p.split(",")[1]) for p in lines["traced"]]
    assert ys[0] == 280.0 and ys[1] < ys[0]              # 0 sits on the x axis (320 - 40)
    markers = [(float(l.get("x1")), l.find("s:title", ns).text) for l in root.findall("s:line", ns)
               if l.get("class") == "marker"]
    assert [m[1] for m in markers] == ["loaded", "cached", "</script><b>x</b>"]
    assert markers[0][0] < markers[1][0] < markers[2][0]
    code, stdout, err = cli("plot", known, "-o", str(tmp_path / "p.html"))
    assert code == 0 and "<svg" in (tmp_path / "p.html").read_text()


def test_plot_png_and_errors(cli, known, tmp_path):
    png = tmp_path / "p.png"
    code, out, err = cli("plot", known, "-o", str(png))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 1 and "needs matplotlib" in err and err.count("\n") == 1
    else:
        assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = cli("plot", known, "-o", str(tmp_path / "p.gif"))
    assert code == 1 and "unknown plot format .gif" in err
    empty = tmp_path / "e.htcap"
    _core._capture_write(str(empty), [("alloc", 0x10, 1, None)])
    code, out, err = cli("plot", str(empty), "-o", str(tmp_path / "e.svg"))
    assert code == 1 and "no memory samples" in err
