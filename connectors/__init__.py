"""Connectors: the command line (``cli``), the Kafka worker and its rooms (``worker`` names
them), the embedded broker for tests and the demo (``broker``), the pipeline benchmark
(``bench``) and synthetic feeds (``synthetic``)."""
