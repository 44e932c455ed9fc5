"""Dagster assets of RDMT-local."""
