"""Orchestration backend for lambda instances (Hadoop, Spark, Kafka clusters on Synnefo)."""

__version__ = "0.1.0"
