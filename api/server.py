"""Runs the API under gunicorn, configured from the settings."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from api.settings import Settings

log = logging.getLogger(__name__)

ACCESS_LOG_FORMAT = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                     'request_id=%({x-request-id}o)s location=%({location}o)s')


def _worker_exit(server, worker) -> None:
    # In the worker process: hand unfinished actions back so the next process resumes
    # them at once. ``worker.app`` is this process's GunicornServer, which built them.
    container = getattr(worker.app, "container", None)
    if container is not None:
        container.close()


class GunicornServer(BaseApplication):
    def __init__(self, settings: Settings, extra: dict | None = None):
        self.settings = settings
        self.extra = extra or {}
        self.container = None  # built in each worker process by load()
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": self.settings.bind,
            "workers": self.settings.http_workers,
            "threads": self.settings.http_threads,
            "worker_class": "gthread",
            # Room for a long Authorization header: we answer it with the contract's 401.
            "limit_request_field_size": 65536,
            "graceful_timeout": 30,
            "timeout": 60,
            "control_socket_disable": True,
            "worker_exit": _worker_exit,
            "accesslog": "-",
            # gunicorn's default line plus the request id (joins it to the app's log
            # lines) and the Location of a 202 (the action it created).
            "access_log_format": ACCESS_LOG_FORMAT,
            "proc_name": "lambda-service",
        }
        options.update(self.extra)
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        """The app factory gunicorn calls in each worker after the fork."""
        from api.bootstrap import bootstrap, create_http_app

        self.container = bootstrap(self.settings, run_migrations=False)
        return create_http_app(self.container)


def serve(settings: Settings) -> None:
    """Migrate once in the arbiter, then fork the workers; each builds its own app."""
    from api.adapters.db.engine import create_db_engine, migrate

    engine = create_db_engine(settings.database_url)
    migrate(engine)
    engine.dispose()
    GunicornServer(settings).run()
