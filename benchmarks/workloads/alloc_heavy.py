"""Allocation-heavy workload: instances, dicts, lists, json round trips.

run(scale) allocates and frees millions of small blocks (about 1-2 s
untraced at scale=1) and returns a checksum so the work cannot be skipped.
"""
import json


class Point:
    def __init__(self, x, y, tag):
        self.x = x
        self.y = y
        self.tag = tag

    def as_dict(self):
        return {"x": self.x, "y": self.y, "tag": self.tag, "pair": [self.x, self.y]}


def make_points(n, base):
    return [Point(i, i * 2 + base, "p%d" % (i % 97)) for i in range(n)]


def round_trip(points):
    text = json.dumps([p.as_dict() for p in points])
    back = json.loads(text)
    return sum(d["x"] + d["y"] + len(d["tag"]) for d in back)


def group(points):
    groups = {}
    for p in points:
        groups.setdefault(p.tag, []).append((p.x, p.y))
    return sum(len(v) for v in groups.values())


def run(scale=1.0):
    total = 0
    keep = []
    for r in range(int(80 * scale)):
        pts = make_points(5000, r)
        total += round_trip(pts)
        total += group(pts)
        if r % 8 == 0:
            keep.append(pts)  # some survivors, so the live heap grows
    total += sum(len(k) for k in keep)
    return total


if __name__ == "__main__":
    print(run())
