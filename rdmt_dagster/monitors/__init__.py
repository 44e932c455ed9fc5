"""Reference-file monitors: one module per reference type.

Each module defines a `rdmt_dagster.science.monitor.Monitor` subclass; its
standards are the block of the same name in ``rdmt_dagster/standards/``.
Every module in this package is registered automatically.
"""
