"""Planted leak 3: a closure captured by a registered signal handler.

install() registers a SIGUSR1 handler whose closure holds a list; every job appends a
bytearray to that list. Only the signal module (C code) holds the handler."""
import signal


def install():
    pending = []

    def handler(signum, frame):
        pending.clear()

    def job():
        pending.append(bytearray(256))  # the leak: cleared only when SIGUSR1 comes

    signal.signal(signal.SIGUSR1, handler)
    return job


def uninstall():
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
