"""Planted leak 1: a module-level cache dict that is never evicted.

Each request stores a new Session under a new key in CACHE."""


class Session:
    def __init__(self, user):
        self.user = user
        self.history = []


CACHE = {}
_requests = [0]


def handle_request():
    _requests[0] += 1
    user = _requests[0] + 1000
    CACHE["user:%d" % user] = Session(user)  # the leak: nothing ever removes a session
