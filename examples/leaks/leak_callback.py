"""Planted leak 2: a class attribute list appended to by a callback.

Every event registers the Listener's callback, which appends a new Event to the class-level
list Listener.seen: the list lives as long as the class."""


class Event:
    def __init__(self, n):
        self.n = n


class Listener:
    seen = []

    @classmethod
    def on_event(cls, n):
        cls.seen.append(Event(n))  # the leak: the class keeps every event


_hooks = [Listener.on_event]
_count = [0]


def fire():
    _count[0] += 1
    for hook in _hooks:
        hook(_count[0])
