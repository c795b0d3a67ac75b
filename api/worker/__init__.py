"""Dispatchers: how an accepted action reaches ``Orchestrator.run``."""
