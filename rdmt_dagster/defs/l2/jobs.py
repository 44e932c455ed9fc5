"""The L2 job and the tag that ties a run to its batch of files (each defined once)."""

import dagster as dg

L2_JOB = "monitor_l2_images"
BATCH_TAG = "rdmt/l2_batch"

L2_ASSETS = ("l2_metrics", "l2_evaluations", "l2_reports", "l2_notifications")

monitor_l2_images = dg.define_asset_job(
    L2_JOB,
    selection=dg.AssetSelection.assets(*L2_ASSETS),
    # The steps run one after the other and the files of a batch are measured in parallel
    # inside l2_metrics: a process per step would only add ~5 s of start-up to each.
    executor_def=dg.in_process_executor,
    # The production instance (deploy/dagster-postgres.yaml) limits concurrent runs per arm by this tag.
    run_tags={"rdmt/arm": "l2"},
    description="Measure, evaluate, report and notify one batch of L2 images (the files claimed under the "
                "run's rdmt/l2_batch tag), or, without the tag, every image of the run's days again under "
                "the next reprocess number (a data release).",
)
