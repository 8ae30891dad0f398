"""Connectors: command line, files and (later) Kafka I/O, state and workers."""
