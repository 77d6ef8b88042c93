"""`heaptrail diff OLD NEW`: what grew between two heap snapshot files."""
from heaptrail.commands._snapshots import open_snapshot, positive, print_json


class DiffCommand:
    name = "diff"
    help = "compare two heap snapshot files: count and size growth per type"

    def prepare_parser(self, parser):
        parser.add_argument("old", help="the earlier snapshot file")
        parser.add_argument("new", help="the later snapshot file")
        parser.add_argument("--by", choices=("type", "owner", "module"), default="type")
        parser.add_argument("--top", type=positive, default=20, metavar="N")
        parser.add_argument("--json", action="store_true", help="print the rows as JSON")

    def run(self, args):
        old = open_snapshot(args.old, self.name)
        new = open_snapshot(args.new, self.name)
        rows = new.diff(old, by=args.by)
        if args.json:
            print_json(rows.as_dicts()[:args.top])
            return 0
        print(f"{args.old} -> {args.new}: {new.objects - old.objects:+d} objects, "
              f"{new.total_size - old.total_size:+d} bytes")
        print(rows.format(top=args.top) if rows else "no change")
        return 0


COMMAND = DiffCommand
