"""`heaptrail retainers FILE`: the objects that keep the most memory alive (retained size)."""
from heaptrail.commands._snapshots import open_snapshot, positive


class RetainersCommand:
    name = "retainers"
    help = "list the objects of a snapshot file with the largest retained sizes"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file")
        parser.add_argument("--top", type=positive, default=20, metavar="N")
        parser.add_argument("--type", dest="kind", metavar="NAME",
                            help="only objects of this type (e.g. dict, app.Session, Session)")

    def run(self, args):
        snap = open_snapshot(args.file, self.name)
        print(snap.top_retainers(args.top, kind=args.kind))
        return 0


COMMAND = RetainersCommand
