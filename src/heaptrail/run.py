"""Capturing a whole program into a capture file (`heaptrail run`): the
Python face of `_core/runcap.c`, which streams the tracer's events into the
capture writer while the program runs.

    from heaptrail import run
    run.start("prog.htcap", interval=0.01)
    ...                      # the program
    run.stop()               # END written; read it with heaptrail.capture.open()

Child processes (`follow_fork=True`): os.fork children write FILE.<pid> from
their first allocation (C, pthread_atfork); interpreters started by the
program (multiprocessing spawn/forkserver, subprocess running Python) find
HEAPTRAIL_CAPTURE in their environment and the bootstrap directory
(heaptrail/_bootstrap, holding a sitecustomize that chains to any other) on
PYTHONPATH, and capture themselves into FILE.<pid> too.
"""
import atexit
import os
import sys
import threading

from heaptrail import _core, tracer

ENV_CAPTURE = "HEAPTRAIL_CAPTURE"          # base path: children write <base>.<pid>
ENV_OPTIONS = "HEAPTRAIL_CAPTURE_OPTIONS"  # interval_ns,sample,frames
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")

_state = {"path": None, "follow": False, "pid": None, "fork_hook": False, "atexit": False}


def is_capturing():
    """True while this process writes a capture."""
    return _core._runcap_active()


def marker(label):
    """A marker on the capture's timeline (no-op when not capturing)."""
    _core._runcap_marker(str(label))


def _cmdline():
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return f.read().rstrip(b"\0")
    except OSError:
        return "\0".join(sys.argv).encode("utf-8", "replace")


def _name_thread(frame, event, arg):
    """One-shot profile function (threading.setprofile): a new thread names
    itself in the capture on its first Python call, then removes it."""
    sys.setprofile(None)
    _core._runcap_thread_name(threading.current_thread().name)


def set_base(code):
    """Stacks in the capture start above the frames of `code` (the runner's
    function that execs the program), so reports show the program's own
    frames at their base, not heaptrail's. None: full stacks."""
    _core._runcap_set_base(code)


def start(path, interval=0.01, sample=None, frames=tracer.DEFAULT_FRAMES, follow_fork=False,
          cmdline=None):
    """Opens the capture at path and starts tracing every allocation (or a
    sample of mean `sample` bytes) with `frames` frames per stack; a memory
    sample every `interval` seconds."""
    interval_ns = int(round(interval * 1e9))
    if cmdline is None:
        cmdline = _cmdline()
    path = os.path.abspath(os.fspath(path))
    # everything that allocates is done before the capture opens: heaptrail's own
    # allocations are no rows of the program's reports
    env = {}
    if follow_fork:
        env[ENV_CAPTURE] = path
        env[ENV_OPTIONS] = f"{interval_ns},{sample or 0},{frames}"
        pp = os.environ.get("PYTHONPATH")
        if BOOTSTRAP_DIR not in (pp or "").split(os.pathsep):
            env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + pp if pp else "")
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    if not _state["atexit"]:   # the sampler must stop before the interpreter finalizes
        atexit.register(stop)
        _state["atexit"] = True
    if not _state["fork_hook"]:
        os.register_at_fork(after_in_child=_after_fork_child)
        _state["fork_hook"] = True
    name = threading.current_thread().name
    try:
        _core._runcap_start(path, interval_ns, sample or 0, bool(follow_fork), cmdline, name)
        try:
            tracer.start(frames=frames, sample=sample)
        except BaseException:
            _core._runcap_stop()
            raise
    except BaseException:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        raise
    _state["path"], _state["follow"], _state["pid"] = path, bool(follow_fork), os.getpid()
    threading.setprofile(_name_thread)
    # os._exit skips atexit and every finally: the capture is closed first, or the
    # events still in the writer's buffers (all of a short program's) were lost
    os._exit = _exit_closing


def stop():
    """Closes the capture (final memory sample, END) and stops the tracer.
    Returns the path written, or None when nothing was capturing."""
    if threading.getprofile() is _name_thread:
        threading.setprofile(None)
    if os._exit is _exit_closing:
        os._exit = _real_exit
    was = _core._runcap_active()
    _core._runcap_stop()
    tracer.stop()
    if not was:
        return None
    if os.getpid() != _state["pid"]:      # a followed fork child: its own file
        return f"{_state['path']}.{os.getpid()}"
    return _state["path"]


def children(path):
    """The capture files of path's child processes (path.<pid>), by pid."""
    d, base = os.path.split(os.path.abspath(os.fspath(path)))
    out = []
    try:
        names = os.listdir(d or ".")
    except OSError:
        return out
    for name in names:
        if name.startswith(base + ".") and name[len(base) + 1:].isdigit():
            out.append((int(name[len(base) + 1:]), os.path.join(d, name)))
    return [p for _, p in sorted(out)]


_real_exit = os._exit


def _exit_closing(code):
    """os._exit while capturing (and in a followed fork child: multiprocessing's
    fork workers end with it): the capture is closed first, so it is complete."""
    try:
        stop()
    finally:
        _real_exit(code)


def _after_fork_child():
    if not tracer.is_tracing():
        return
    if _core._runcap_after_fork():
        os._exit = _exit_closing
    elif not is_capturing():
        tracer.stop()     # not followed: the child runs at full speed


def _start_child(base):
    """From the bootstrap sitecustomize, in an interpreter the program
    started: capture into <base>.<pid> until exit."""
    interval_ns, sample, frames = (int(x) for x in os.environ.get(ENV_OPTIONS, "10000000,0,128").split(","))
    path = f"{base}.{os.getpid()}"
    start(path, interval=interval_ns / 1e9, sample=sample or None, frames=frames, follow_fork=True)
    # children of this child use the same base
    os.environ[ENV_CAPTURE] = base
    _state["pid"] = os.getpid()
    _state["path"] = path
