"""`heaptrail path FILE ADDR`: the shortest chain of references from a root to an object."""
from heaptrail.commands._snapshots import open_snapshot, parse_address


class PathCommand:
    name = "path"
    help = "show the shortest reference chain from a root to the object at ADDR"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file")
        parser.add_argument("address", help="the object's address (0x7f... or decimal)")

    def run(self, args):
        snap = open_snapshot(args.file, self.name)
        path = snap.path_to_root(parse_address(args.address))
        print(path)
        return 0 if path.reachable else 1


COMMAND = PathCommand
