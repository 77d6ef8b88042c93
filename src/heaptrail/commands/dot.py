"""`heaptrail dot FILE ADDR -o out.svg`: the objects around one object, as a Graphviz graph."""
import sys

from heaptrail.commands._snapshots import number, open_snapshot, parse_address, refuse_overwriting

# to_dot's own bounds, checked here so that the message names the option and the value typed
_depth = number("depth", lo=1, hi=1000)
_max_nodes = number("max-nodes", lo=1, hi=100000)


class DotCommand:
    name = "dot"
    help = "draw the references around the object at ADDR (Graphviz: .svg .png .pdf .dot)"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file")
        parser.add_argument("address", help="the object's address (0x7f... or decimal)")
        parser.add_argument("-o", "--output", metavar="PATH",
                            help="write here (.svg/.png/.pdf need Graphviz; .dot is text); "
                                 "default: DOT text on stdout")
        parser.add_argument("--backrefs", action="store_true",
                            help="what refers to the object, instead of what it refers to")
        parser.add_argument("--depth", type=_depth, default=3, help="levels drawn (1 to 1000)")
        parser.add_argument("--max-nodes", type=_max_nodes, default=200,
                            help="objects drawn at most (1 to 100000)")

    def run(self, args):
        if args.output is not None:
            refuse_overwriting(args.output, args.file)
        snap = open_snapshot(args.file, self.name)
        addr = parse_address(args.address)
        direction = "backrefs" if args.backrefs else "refs"
        if args.output is None:
            sys.stdout.write(snap.to_dot(addr, direction, args.depth, args.max_nodes))
            return 0
        snap.render(addr, args.output, direction, args.depth, args.max_nodes)
        print(f"heaptrail: wrote {args.output}", file=sys.stderr)
        return 0


COMMAND = DotCommand
