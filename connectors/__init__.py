"""Connectors: the command line (``cli``) and everything that does I/O around the coding.

* The Kafka worker (``worker``: the loop) and its rooms: ``intake`` (input records mapped onto
  the events topic), ``hold`` (closes wait for every input partition), ``processor`` (the
  events side: state, coding, publishing), ``checkpoint`` (results, changelog, store, then
  offsets: the one place offsets are committed), ``store`` / ``state`` (per-encounter state
  and its local SQLite store), ``recovery`` (state restored from the changelog), ``rebalance``,
  ``ticker`` (idle closes, retention), ``medications`` (the Medication reference table),
  ``dead_letters``, ``topics``, ``errors``, ``clients``, ``positions``, ``codec``, ``routing``.
* Operator commands: ``recode``, ``redrive`` (dead letters), ``repartition``; ``ops`` (metrics,
  health, logs); ``settings`` (the worker's configuration); ``config_doc`` and ``helm_schema``
  (docs/configuration.md and the Helm values schema, generated from the models; ``generated``
rewrites or checks them).
* ``broker`` (the embedded tansu broker for tests and the demo), ``demo`` (``make demo``),
  ``bench`` (the pipeline benchmark) and ``synthetic`` (synthetic feeds).
"""
