"""Coding core: pure, table-driven rules from administration events to coded charge lines.

No I/O, no Kafka, no FHIR classes.  Entry point: :func:`coding_core.engine.code_encounter`.
"""
