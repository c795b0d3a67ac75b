"""``python -m benchmarks.serve bare|product-noop``: an app under the product's server.

``bare`` serves ``benchmarks.bare_app`` (the framework ceiling) through the product's own
``api.server.run_workers``, so the server (hypercorn, its timeouts and limits, the worker
processes, the access log) is exactly the one ``lambda-service serve`` runs.

``product-noop`` serves the product with a no-op dispatcher: the accept path of the
embedded mode without running the accepted actions (the 202 then measures the durable
insert only). The product proper is served by ``lambda-service serve`` itself.
"""

from __future__ import annotations

import sys

from api.server import run_workers, serve
from api.settings import load_settings


class NoopDispatcher:
    def dispatch(self, action_id: str) -> bool:
        return True

    def stop(self) -> None:
        pass


def build_bare(settings):
    from benchmarks.bare_app import create_app

    return create_app(), lambda: None


def build_product_noop(settings):
    from api.bootstrap import bootstrap, create_http_app

    container = bootstrap(settings, run_migrations=False)
    container.dispatcher = NoopDispatcher()
    return create_http_app(container), container.close


def main(argv: list[str]) -> int:
    kinds = {"bare": build_bare, "product-noop": build_product_noop}
    if len(argv) != 1 or argv[0] not in kinds:
        print(f"usage: python -m benchmarks.serve {'|'.join(kinds)}", file=sys.stderr)
        return 2
    settings = load_settings()
    if argv[0] == "bare":
        return run_workers(settings, build_bare)  # no database to migrate
    serve(settings, build_product_noop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
