"""Configuration of the L2 arm: where notices come from, the catalog, batches.

Environment (read in `l2_config_from_env`, at the definitions):

``RDMT_L2_QUEUE_URL``
    The SQS queue of L2 notices; the SQS sensor runs by default when set.
``RDMT_L2_BUCKET_PREFIXES``
    ``bucket/prefix`` entries, comma-separated, listed by the catch-up sensor
    (off by default); ``%Y``, ``%m``, ``%d``, ``%j`` in a prefix are the
    date, for today and the ``RDMT_L2_CATCHUP_DAYS`` (2) days before.
``RDMT_L2_CATALOG``
    The astrometric reference catalog (ECSV or Parquet).
``RDMT_L2_BATCH_SIZE``, ``RDMT_L2_MAX_WAIT``
    A run starts when a day has this many files waiting (18: one exposure of
    every detector), or when its oldest has waited this many seconds (120).
``RDMT_L2_MAX_BATCH_SIZE``
    The most files one run takes when more than one batch is waiting (72):
    behind a backlog, fewer and larger runs. A run costs ~26 core-s whatever
    its size (launch, code location, worker pool, day page): the replay of
    the peak spent 2.5 core-s per image in runs of 18, 1.7 in runs of 36.
``RDMT_L2_DELETE_REJECTED``
    ``0`` leaves rejected messages to the queue's redrive policy.
``RDMT_L2_CLAIM_TIMEOUT``
    Minutes after which the claims of a batch whose run is not in progress return to pending (30).
``RDMT_L2_MAX_RUN_SECONDS``
    The ``dagster/max_runtime`` of a batch's run (900, several times a loaded
    run): with run monitoring on, a run whose worker died is failed after it,
    and retried.

AWS endpoint and credentials come from boto3's usual sources
(``AWS_ENDPOINT_URL`` for a local server such as moto).
"""

import functools
import os

import dagster as dg


class L2Config(dg.ConfigurableResource):
    """How the L2 arm receives, batches and measures images."""

    queue_url: str | None = None
    bucket_prefixes: list[str] = []
    catchup_days: int = 2
    catalog: str | None = None
    batch_size: int = 18
    max_batch_size: int = 72
    max_wait_seconds: float = 120.0
    max_messages: int = 100
    tick_budget_seconds: float = 20.0
    header_budget_seconds: float = 20.0
    delete_rejected: bool = True
    check_objects: bool = True
    claim_timeout_minutes: float = 30.0
    max_run_seconds: float = 900.0
    workdir: str | None = None

    def sqs(self):
        return aws_client("sqs")

    def s3(self):
        return aws_client("s3")


@functools.lru_cache(maxsize=16)
def _cached_client(service: str, endpoint: str | None, key_id: str | None, region: str | None):
    import boto3

    return boto3.client(service)


def aws_client(service: str):
    """A boto3 client of ``service``, one per process and configuration.

    Creating a client costs ~20 ms, most of an idle sensor tick; clients are
    thread-safe. A change of endpoint, key or region (from the environment)
    gives a new one.
    """
    env = os.environ
    return _cached_client(service, env.get("AWS_ENDPOINT_URL"), env.get("AWS_ACCESS_KEY_ID"),
                          env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"))


def _number(name: str, default, kind=float):
    try:
        return kind(os.environ.get(name, default))
    except ValueError:
        return default


def l2_config_from_env() -> L2Config:
    """`L2Config` from the ``RDMT_L2_*`` variables (see the module's docstring)."""
    prefixes = [p.strip() for p in os.environ.get("RDMT_L2_BUCKET_PREFIXES", "").split(",") if p.strip()]
    return L2Config(
        queue_url=os.environ.get("RDMT_L2_QUEUE_URL") or None,
        bucket_prefixes=prefixes,
        catchup_days=_number("RDMT_L2_CATCHUP_DAYS", 2, int),
        catalog=os.environ.get("RDMT_L2_CATALOG") or None,
        batch_size=max(1, _number("RDMT_L2_BATCH_SIZE", 18, int)),
        max_batch_size=max(1, _number("RDMT_L2_MAX_BATCH_SIZE", 72, int)),
        max_wait_seconds=max(0.0, _number("RDMT_L2_MAX_WAIT", 120.0)),
        delete_rejected=os.environ.get("RDMT_L2_DELETE_REJECTED", "1").strip().lower() not in ("0", "false", "no"),
        claim_timeout_minutes=max(1.0, _number("RDMT_L2_CLAIM_TIMEOUT", 30.0)),
        max_run_seconds=max(60.0, _number("RDMT_L2_MAX_RUN_SECONDS", 900.0)),
    )
