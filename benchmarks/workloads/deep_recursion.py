"""Deep-stack workload: allocations made 200 frames below the caller.

run(scale) descends 200 Python frames many times and allocates small
objects at every level on the way back up, so every block has a stack of
about 200 frames.
"""

DEPTH = 200


class Node:
    def __init__(self, level, payload):
        self.level = level
        self.payload = payload


def descend(level, out):
    if level == 0:
        return
    descend(level - 1, out)
    out.append(Node(level, [level] * 4))
    out.append({"level": level, "name": "n%d" % level})


def run(scale=1.0):
    total = 0
    for _ in range(int(3000 * scale)):
        out = []
        descend(DEPTH, out)
        total += len(out)
    return total


if __name__ == "__main__":
    import sys
    sys.setrecursionlimit(10000)
    print(run())
