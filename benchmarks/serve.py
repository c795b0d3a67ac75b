"""``python -m benchmarks.serve bare|product-noop``: an app under the product's gunicorn settings.

``bare`` serves ``benchmarks.bare_app`` (the framework ceiling) through the product's own
``api.server.GunicornServer``, so the gunicorn configuration (gthread, workers, threads,
access log, limits) is exactly the one ``lambda-service serve`` uses.

``product-noop`` serves the product with a no-op dispatcher: the fallback for the accept
path when no Celery broker is reachable (the 202 then measures the durable insert only).
The product proper is served by ``lambda-service serve`` itself.
"""

from __future__ import annotations

import sys

from api.server import GunicornServer
from api.settings import load_settings


class NoopDispatcher:
    def dispatch(self, action_id: str) -> bool:
        return True

    def stop(self) -> None:
        pass


class BareServer(GunicornServer):
    def load(self):
        from benchmarks.bare_app import create_app

        return create_app()


class NoopDispatchServer(GunicornServer):
    def load(self):
        from api.bootstrap import bootstrap, create_http_app

        self.container = bootstrap(self.settings, run_migrations=False)
        self.container.dispatcher = NoopDispatcher()
        return create_http_app(self.container)


def main(argv: list[str]) -> int:
    kinds = {"bare": BareServer, "product-noop": NoopDispatchServer}
    if len(argv) != 1 or argv[0] not in kinds:
        print(f"usage: python -m benchmarks.serve {'|'.join(kinds)}", file=sys.stderr)
        return 2
    kinds[argv[0]](load_settings()).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
