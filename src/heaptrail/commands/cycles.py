"""`heaptrail cycles FILE`: reference cycles, biggest first."""
from heaptrail.commands._snapshots import open_snapshot, positive


class CyclesCommand:
    name = "cycles"
    help = "list the reference cycles of a snapshot file, biggest first"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file")
        parser.add_argument("--top", type=positive, default=20, metavar="N")
        parser.add_argument("--garbage", action="store_true",
                            help="only unreachable cycles (snapshots taken with gc_first=False)")

    def run(self, args):
        snap = open_snapshot(args.file, self.name)
        cycles = snap.cycles(garbage=args.garbage)
        for c in cycles[:args.top]:
            print(c)
        if len(cycles) > args.top:
            print(f"<{len(cycles) - args.top} more cycles>")
        print(f"{len(cycles)} cycle{'s' if len(cycles) != 1 else ''}")
        return 0


COMMAND = CyclesCommand
