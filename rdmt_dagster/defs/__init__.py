"""Dagster definitions by domain: ``reference_files`` and ``l2`` arms on ``shared`` resources.

Each arm is a `dagster.Definitions` of its own (assets, checks, jobs,
sensors); `rdmt_dagster.definitions` merges them with the shared resources.
"""
