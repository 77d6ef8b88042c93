"""heaptrail export FILE --format pprof|speedscope|json|csv -o OUT: a capture in
another tool's format. pprof: gzip-compressed profile.proto (encoded in C) with
alloc_objects/alloc_space/inuse_objects/inuse_space, in-use meaning the peak
(or --leaks: what was still allocated at exit); speedscope: its JSON file
format, one sampled profile weighted by bytes; json/csv: rows by stack."""
import csv
import io
import json

from heaptrail import capture
from heaptrail.cli import CommandError
from heaptrail._format import write_file
from heaptrail.commands._snapshots import refuse_overwriting

FORMATS = ("pprof", "speedscope", "json", "csv")


class ExportCommand:
    name = "export"
    help = "export a capture as pprof, speedscope, JSON or CSV"

    def prepare_parser(self, parser):
        capture.add_file_argument(parser)
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument("-o", "--output", required=True, help="file to write")

    def run(self, args):
        refuse_overwriting(args.output, args.file)
        cap = capture.load_for_command(args.file)
        # the whole file is made before it is opened: a failure leaves an existing one as it was
        if args.format == "pprof":
            if args.report == "total":
                raise CommandError("pprof always holds the totals (alloc_*): choose --peak or --leaks for inuse_*")
            data = cap.pprof(args.report)
        elif args.format == "speedscope":
            data = json.dumps(capture.speedscope(cap, args.report))
        else:
            rows = stack_rows(cap, args.report)
            if args.format == "json":
                data = json.dumps({"file": cap.path, "report": args.report, "truncated": cap.truncated,
                                   "rows": rows}, indent=1)
            else:
                f = io.StringIO(newline="")
                w = csv.writer(f)
                w.writerow(["bytes", "count", "function", "file", "line", "stack"])
                for r in rows:
                    w.writerow([r["bytes"], r["count"], r["function"], r["file"], r["line"],
                                ";".join(f"{s['function']}@{s['file']}:{s['line']}" for s in r["stack"])])
                data = f.getvalue()
        write_file(args.output, data)
        print(f"wrote {args.output} ({args.format}, {args.report})")
        return 0


def stack_rows(cap, report):
    out = []
    for r in cap.rows(report, by="stack"):
        out.append({"bytes": r.bytes, "count": r.count, "function": r.function, "file": r.file,
                    "line": r.line, "stack": [f._asdict() for f in cap.stack(r.node)]})
    return out


COMMAND = ExportCommand
