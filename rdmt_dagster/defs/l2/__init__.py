"""The L2 arm on Dagster: SQS / S3 ingest, daily partitions, batch runs, reports."""
