"""The gunicorn settings the product's server (and the benchmark's bare server) run with."""

from __future__ import annotations

import gc

from api.server import GunicornServer
from api.settings import Settings


def test_each_worker_freezes_what_it_built_at_start_up_out_of_the_cyclic_gc():
    server = GunicornServer(Settings(http_workers=1))
    hook = server.cfg.post_worker_init
    before_start = [object() for _ in range(1000)]
    assert gc.get_freeze_count() == 0
    try:
        hook(None)
        # Everything alive when the worker finished loading is out of every collection...
        assert gc.get_freeze_count() >= len(before_start)
        made_later = [[] for _ in range(10)]
        # ...and what the worker makes afterwards is collected as usual.
        assert all(gc.is_tracked(item) for item in made_later)
    finally:
        gc.unfreeze()
