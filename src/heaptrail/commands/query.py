"""`heaptrail query FILE EXPR`: the objects of a snapshot file matching a query."""
from heaptrail.commands._snapshots import open_snapshot, positive, print_json


class QueryCommand:
    name = "query"
    help = "list the objects of a snapshot file matching an expression"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file")
        parser.add_argument("expr", help="e.g. \"type == 'dict' and size > 1000 and len > 10\" "
                                         "(fields: type size len address value name module "
                                         "referrers retained)")
        parser.add_argument("--limit", type=positive, default=100, metavar="N",
                            help="at most N objects (default 100)")
        parser.add_argument("--json", action="store_true", help="print the records as JSON")

    def run(self, args):
        snap = open_snapshot(args.file, self.name)
        recs = snap.query(args.expr, limit=args.limit + 1)  # one more: do more match?
        more = len(recs) > args.limit
        del recs[args.limit:]
        if args.json:
            print_json([r._asdict() for r in recs])
        else:
            for r in recs:
                print(r)
            print(f"{len(recs)} object{'s' if len(recs) != 1 else ''}"
                  f"{' (more match: raise --limit)' if more else ''}")
        return 0


COMMAND = QueryCommand
