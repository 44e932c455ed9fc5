"""Running the L2 monitors outside the Dagster run process, through Dagster Pipes.

`rdmt_dagster.pipes.codec` turns measurement tasks and their `MetricSet`
results into JSON and back, exactly; `rdmt_dagster.pipes.monitor` is the one
entry point of every external kind (``python -m rdmt_dagster.pipes.monitor``
for a subprocess or an ECS task, `rdmt_dagster.pipes.monitor.lambda_handler`
for AWS Lambda). The orchestration side is `rdmt_dagster.defs.l2.runners`.

Nothing here imports Dagster except the monitor's use of the small
``dagster-pipes`` package, so the monitor image needs no Dagster instance.
"""
