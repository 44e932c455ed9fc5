"""The L2 half of ``rdmt demo``: an archive on loopback, synthetic L2 images, SNS notices.

A moto server on 127.0.0.1 plays the archive's S3 bucket, its SNS topic and
the SQS queue subscribed to it (real boto3 over HTTP). Synthetic full-size
L2 images of the 18 detectors over three exposures are uploaded and
announced with the archive's notice, as the archive does; the daemon's
sensors take it from there (SQS sensor -> headers and batches -> one run per
batch). One detector has injected 1/f noise (and was calibrated with the
failing dark of the reference deliveries), one image has a WCS off by a
third of an arcsecond.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from .synthetic import DETECTORS, reference_filename

BUCKET = "roman-demo-archive"
EXPOSURES = (1, 2, 3)
ONE_OVER_F_DETECTOR = "WFI07"      # as the dark with the injected excess
ONE_OVER_F_RMS = 0.09              # DN/s: ~50x the base pattern of the 1/f benchmark, well above its limits
OFFSET_IMAGE = ("WFI11", 2)        # (detector, exposure) written with a WCS off by OFFSET_ARCSEC
OFFSET_ARCSEC = (0.3, 0.0)
CONTEXT = "roman_0002.pmap"
IMAGE_MB = 32                      # one compressed synthetic image


def dark_used(detector: str, dark_deliveries: dict[int, list[str]]) -> str | None:
    """The newest demo dark of ``detector``: the one the pipeline would have calibrated with."""
    for delivery in sorted(dark_deliveries, reverse=True):
        name = reference_filename("dark", delivery, detector)
        if name in dark_deliveries[delivery]:
            return name
    return None


def scenes(dark_deliveries: dict[int, list[str]]):
    """The demo's scenes: every detector, every exposure, with its anomalies and reference files."""
    from .synthetic.l2 import scene_for

    out = []
    for exposure in EXPOSURES:
        for detector in DETECTORS:
            ref = {"crds_context": CONTEXT}
            dark = dark_used(detector, dark_deliveries)
            if dark:
                ref["dark"] = dark
            scene = scene_for(detector, exposure, ref_file=ref)
            if detector == ONE_OVER_F_DETECTOR:
                scene = replace(scene, one_over_f=ONE_OVER_F_RMS)
            if (detector, exposure) == OFFSET_IMAGE:
                scene = replace(scene, wcs_shift=OFFSET_ARCSEC)
            out.append(scene)
    return out


def _write(job) -> str:
    from .synthetic.l2 import write_l2

    path, scene = job
    if not Path(path).exists():
        write_l2(path, scene)
    return str(path)


def write_images(folder: Path, scene_list, workers: int = 2, progress=print) -> list[Path]:
    """Write (or reuse) the images, showing progress; returns their paths."""
    from .synthetic.l2 import l2_filename

    jobs = [(folder / l2_filename(scene), scene) for scene in scene_list]
    paths = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, path in enumerate(pool.map(_write, jobs), start=1):
            paths.append(Path(path))
            if i % 6 == 0 or i == len(jobs):
                progress(f"  L2 images: {i}/{len(jobs)} written ({time.perf_counter() - start:.0f} s)", flush=True)
    return paths


class Archive:
    """S3 bucket, SNS topic and subscribed SQS queue on a moto server on loopback."""

    def __enter__(self) -> "Archive":
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one request line per S3/SQS call otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                    "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(self.env)
        os.environ.pop("AWS_PROFILE", None)
        self.s3, self.sqs, self.sns = (boto3.client(n) for n in ("s3", "sqs", "sns"))
        self.s3.create_bucket(Bucket=BUCKET)
        self.queue_url = self.sqs.create_queue(QueueName="rdmt-l2-notices",
                                               Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.topic = self.sns.create_topic(Name="roman-archive-l2")["TopicArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
        return self

    def publish(self, path: Path, day: str) -> str:
        """Upload one image and announce it as the archive does; returns its key."""
        key = f"wfi/l2/{day.replace('-', '/')}/{path.name}"
        self.s3.upload_file(str(path), BUCKET, key)
        notice = {"archiveBucket": BUCKET, "archiveObjectKey": key, "filename": path.name,
                  "fileType": "science_wfi_level_2",
                  "fileCreationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                  "reprocessingState": "none", "checksum": f"{path.stat().st_size:x}",
                  "fileSize": path.stat().st_size}
        self.sns.publish(TopicArn=self.topic, Message=json.dumps(notice))
        return key

    def __exit__(self, *exc) -> None:
        self.server.stop()


def wait_until_measured(database, names: list[str], reports: Path, instance, daemon, timeout: float) -> bool:
    """Wait until every announced image is measured, its day page written, and no run is in progress."""
    import sqlalchemy as sa

    from .demo import _in_progress_runs
    from .storage.l2_tables import l2_file

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            print(f"the Dagster daemon stopped; see {daemon.log_path}")
            return False
        with database.engine.connect() as conn:
            rows = conn.execute(sa.select(l2_file.c.filename, l2_file.c.status, l2_file.c.observation_day)
                                .where(l2_file.c.filename.in_(names))).all()
        done = {r.filename for r in rows if r.status in ("ok", "error")}
        days = {r.observation_day for r in rows if r.observation_day}
        pages = all((reports / "l2" / day / "index.html").exists() for day in days)
        if len(done) == len(names) and pages and _in_progress_runs(instance) == 0:
            return True
        time.sleep(2)
    return False


def failure_lines(database, names: list[str]) -> list[str]:
    """One line per failing image and monitor: the metrics that failed and the reference files behind them."""
    import sqlalchemy as sa

    from .storage.l2_tables import l2_evaluation, l2_file, l2_measurement, l2_metric_value

    f, m, e, v = l2_file, l2_measurement, l2_evaluation, l2_metric_value
    query = (sa.select(f.c.filename, f.c.detector, f.c.ref_files, m.c.monitor, e.c.metric, e.c.evaluator,
                       v.c.value, v.c.unit, e.c.threshold, e.c.lower)
             .select_from(f).join(m, m.c.file_id == f.c.id)
             .join(e, (e.c.file_id == f.c.id) & (e.c.monitor == m.c.monitor) & (e.c.standards_hash == m.c.standards_hash))
             .join(v, (v.c.file_id == e.c.file_id) & (v.c.monitor == e.c.monitor) & (v.c.metric == e.c.metric)
                   & (v.c.region == e.c.region))
             .where(f.c.filename.in_(names) & e.c.passed.is_(False) & (e.c.region == 0)
                    & e.c.metric.like("detector_%"))
             .order_by(f.c.detector, f.c.filename, m.c.monitor, e.c.metric, e.c.evaluator))
    lines = []
    with database.engine.connect() as conn:
        for r in conn.execute(query):
            value = "nan" if r.value is None else f"{r.value:.4g}"
            limit = r.threshold if r.threshold is not None else r.lower
            limit = "" if limit is None else f" (limit {limit:.4g})"
            dark = json.loads(r.ref_files or "{}").get("dark", "")
            cause = f"; calibrated with {dark}" if dark else ""
            lines.append(f"  {r.detector} {r.filename} {r.monitor}: {r.metric} [{r.evaluator}] "
                         f"{value} {r.unit}{limit}{cause}".rstrip())
    return lines
