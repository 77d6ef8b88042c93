"""CLI plumbing: --version, --help on every command, usage errors."""
import heaptrail
from heaptrail.cli import build_parser
from conftest import run_cli, run_python


def test_version(cli):
    code, out, err = cli("--version")
    assert code == 0
    assert out.strip() == f"heaptrail {heaptrail.__version__}"


def test_no_command_is_usage_error(cli):
    code, out, err = cli()
    assert code == 2
    assert "usage: heaptrail" in err


def test_unknown_command(cli):
    code, out, err = cli("no-such-command")
    assert code == 2
    assert "invalid choice" in err


def test_every_command_has_help(cli):
    parser = build_parser()
    names = list(parser._subparsers._group_actions[0].choices)
    for name in names:
        code, out, err = cli(name, "--help")
        assert code == 0, name
        assert out.startswith(f"usage: heaptrail {name}"), name


def test_python_dash_m_entry_point():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"heaptrail {heaptrail.__version__}"
    assert proc.stderr == ""


def test_closed_pipe_is_quiet():
    """`heaptrail ... | head`: no error line, no traceback when the reader goes away."""
    proc = run_python("""
        import os, sys
        r, w = os.pipe()
        os.close(r)                      # the reader is gone before we write
        os.dup2(w, 1)
        from heaptrail.cli import main
        code = main(["mem", "--top", "50"])
        os.write(2, b"exit %d" % code)
    """, check=False)
    assert proc.stderr == "exit 141", proc.stderr
