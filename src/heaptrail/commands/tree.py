"""heaptrail tree FILE: the call tree of the memory live at the peak (or at exit,
or allocated in total), indented, with sizes and percents."""
from heaptrail import capture
from heaptrail._format import human_bytes
from heaptrail.commands._snapshots import count, number


_percent = number("percent", float, 0, 100)


class TreeCommand:
    name = "tree"
    help = "call tree of a capture's memory at the peak, with sizes and percents"

    def prepare_parser(self, parser):
        capture.add_file_argument(parser)
        parser.add_argument("--min-percent", type=_percent, default=1.0,
                            help="hide branches below this share of the total (default 1)")
        parser.add_argument("--depth", type=count, default=0, help="deepest level shown (0: all)")

    def run(self, args):
        cap = capture.load_for_command(args.file)
        print(tree_text(cap, args.report, args.min_percent, args.depth))
        return 0


def tree_text(cap, report="peak", min_percent=1.0, depth=0):
    nodes = cap.tree(report)
    children = {}
    for t in nodes:
        children.setdefault(t.parent, []).append(t)
    total = nodes[0].bytes if nodes else 0
    lines = [f"{human_bytes(total)} {report} of {cap.path}"]
    limit = total * min_percent / 100

    def walk(root):
        # iterative: a stack can be thousands of frames deep (`heaptrail run --frames 5000`),
        # past Python's recursion limit. An entry: [node, level, its kids, next kid, hidden bytes]
        todo = [[root, 0, kids_of(root), 0, 0]]
        while todo:
            top = todo[-1]
            t, level, kids = top[0], top[1], top[2]
            while top[3] < len(kids):
                k = kids[top[3]]
                top[3] += 1
                if k.bytes < limit or (depth and level >= depth):
                    top[4] += k.bytes
                    continue
                pct = 100 * k.bytes / (total or 1)
                lines.append(f"{human_bytes(k.bytes):>10} {pct:5.1f}%  {'  ' * level}"
                             f"{capture.frame_text(k.function, k.file, k.line)}")
                todo.append([k, level + 1, kids_of(k), 0, 0])
                break
            else:
                todo.pop()
                hidden = top[4]
                if hidden:
                    lines.append(f"{human_bytes(hidden):>10} {100 * hidden / (total or 1):5.1f}%  "
                                 f"{'  ' * level}(smaller branches)")
                if t.self_bytes and kids and level > 0:
                    lines.append(f"{human_bytes(t.self_bytes):>10} {100 * t.self_bytes / (total or 1):5.1f}%  "
                                 f"{'  ' * level}(in {capture.printable(t.function)} itself)")

    def kids_of(t):
        return sorted(children.get(t.node, ()), key=lambda k: (-k.bytes, k.node))

    if nodes:
        root = nodes[0]
        if root.self_bytes:
            lines.append(f"{human_bytes(root.self_bytes):>10} {100 * root.self_bytes / (total or 1):5.1f}%  "
                         "<no Python frame>")
        walk(root)
    return "\n".join(lines)


COMMAND = TreeCommand
