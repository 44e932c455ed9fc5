"""Helpers shared by the tests that run the Dagster job."""

from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.definitions import REFERENCE_FILE_JOB


def run_batch(defs, instance, database, paths):
    """Register ``paths``, add their partitions and run the job over them in one run."""
    names = [p.name for p in paths]
    for p in paths:
        database.register(p.name, str(p))
    instance.add_dynamic_partitions(reference_file_partitions.name, names)
    return defs.resolve_job_def(REFERENCE_FILE_JOB).execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": names[0], "dagster/asset_partition_range_end": names[-1]},
    )
