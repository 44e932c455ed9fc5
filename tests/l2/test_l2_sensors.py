"""The L2 batch and S3 catch-up sensors against a moto S3 on loopback and a real database and Dagster instance.

Images here are small (64x64) but real ASDF files: the sensors read only
their headers.
"""

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from rdmt_dagster.defs.l2.jobs import BATCH_TAG
from rdmt_dagster.defs.l2.resources import L2Config
from rdmt_dagster.defs.l2.sensors import batch_tick, catchup_tick, expand_prefixes, release_stale_claims
from rdmt_dagster.l2.notices import L2Notice
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.storage.l2_ledger import L2Ledger
from rdmt_dagster.storage.l2_store import L2Store
from rdmt_dagster.storage.l2_tables import l2_file
from rdmt_dagster.synthetic.l2 import l2_filename, scene_for, write_l2

from ..conftest import moto_on_loopback

BUCKET = "roman-l2-sensors"


@pytest.fixture(scope="module")
def s3():
    import boto3

    with moto_on_loopback() as endpoint:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", endpoint)
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            yield client


@pytest.fixture
def arm(tmp_path, s3):
    rdmt = RDMTConfig(home=str(tmp_path / "home"))
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    yield {"rdmt": rdmt, "instance": instance, "ledger": L2Ledger(rdmt.database()), "store": L2Store(rdmt.database()),
           "folder": tmp_path, "s3": s3}
    instance.dispose()


def put_image(arm, detector: str, exposure: int, start: str, program: int = 1, prefix: str = "wfi/l2") -> L2Notice:
    """A small real L2 file observed at ``start``, uploaded; its notice (not yet recorded)."""
    scene = replace(scene_for(detector, exposure), shape=(64, 64), n_stars=5, start_time=start)
    path, _ = write_l2(arm["folder"] / l2_filename(scene, program=program), scene, catalog=False)
    key = f"{prefix}/{start[:10].replace('-', '/')}/{path.name}"
    arm["s3"].upload_file(str(path), BUCKET, key)
    return L2Notice(BUCKET, key, path.name, checksum=f"sum-{path.name}")


def announce(arm, *notices):
    for notice in notices:
        arm["ledger"].record_notices([notice], f"m-{notice.filename}")


def tick(arm, now=None, **config):
    l2 = L2Config(**{"batch_size": 3, "max_wait_seconds": 3600, **config})
    context = dg.build_sensor_context(instance=arm["instance"], resources={"rdmt": arm["rdmt"], "l2": l2})
    return batch_tick(context, arm["rdmt"], l2, now=now)


def statuses(arm) -> dict[str, tuple]:
    with arm["rdmt"].database().engine.connect() as conn:
        rows = conn.execute(sa.select(l2_file.c.filename, l2_file.c.status, l2_file.c.claimed_by,
                                      l2_file.c.observation_day, l2_file.c.error)).all()
    return {r.filename: tuple(r[1:]) for r in rows}


def test_a_batch_starts_when_full_and_the_rest_after_the_maximum_wait(arm):
    notices = [put_image(arm, f"WFI{d:02d}", 1, "2027-03-20T05:00:00") for d in range(1, 6)]
    announce(arm, *notices)
    result = tick(arm)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == "2027-03-20" and request.run_key == request.tags[BATCH_TAG]
    claimed = {name for name, s in statuses(arm).items() if s[0] == "claimed"}
    assert len(claimed) == 3 and all(statuses(arm)[n][1] == request.tags[BATCH_TAG] for n in claimed)
    assert isinstance(tick(arm), dg.SkipReason)  # two waiting, not a full batch, not waited long enough
    # After the maximum wait (1 hour) and before the claim timeout of the first batch's files (30 min) ...
    later = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(minutes=70)
    rest = tick(arm, now=later, claim_timeout_minutes=120).run_requests
    assert len(rest) == 1 and rest[0].tags[BATCH_TAG] != request.tags[BATCH_TAG]
    assert {s[0] for s in statuses(arm).values()} == {"claimed"}
    batches = [s[1] for s in statuses(arm).values()]
    assert sorted(batches.count(b) for b in set(batches)) == [2, 3]  # every file in exactly one batch


def test_each_observation_day_is_its_own_partition(arm):
    announce(arm, put_image(arm, "WFI01", 1, "2027-03-20T23:59:00"), put_image(arm, "WFI02", 1, "2027-03-21T00:01:00"))
    requests = tick(arm, max_wait_seconds=0).run_requests
    assert sorted(r.partition_key for r in requests) == ["2027-03-20", "2027-03-21"]


def test_an_unreadable_file_is_filed_under_the_day_it_arrived_and_still_run(arm):
    key = "wfi/l2/2027/03/20/r0000101001001001001_01101_0009_WFI03_cal.asdf"
    arm["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"this is not an ASDF file")
    announce(arm, L2Notice(BUCKET, key, key.rsplit("/", 1)[-1], checksum="c"))
    requests = tick(arm, max_wait_seconds=0).run_requests
    today = datetime.now(timezone.utc).date().isoformat()
    assert [r.partition_key for r in requests] == [today]
    status, _, day, error = statuses(arm)[key.rsplit("/", 1)[-1]]
    assert (status, day) == ("claimed", today) and "ASDF" in error and key.rsplit("/", 1)[-1] in error


def test_an_observation_day_outside_the_partitions_is_an_error_not_a_lost_file(arm):
    announce(arm, put_image(arm, "WFI04", 1, "2019-01-01T00:00:00"))
    assert isinstance(tick(arm, max_wait_seconds=0), dg.SkipReason)
    (status, _, day, error), = statuses(arm).values()
    assert status == "error" and day == "2019-01-01" and "outside the L2 partitions" in error


def test_claims_of_a_batch_without_a_run_return_to_pending(arm):
    announce(arm, *[put_image(arm, f"WFI{d:02d}", 2, "2027-03-20T06:00:00") for d in (1, 2, 3)])
    request, = tick(arm).run_requests
    l2 = L2Config(claim_timeout_minutes=30)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert release_stale_claims(arm["store"], arm["instance"], l2, now) == 0  # not stale yet
    # A started run of the batch keeps its claims, however old.
    arm["instance"].add_run(dg.DagsterRun(job_name="monitor_l2_images", run_id="started-run",
                                          tags=request.tags, status=dg.DagsterRunStatus.STARTED))
    assert release_stale_claims(arm["store"], arm["instance"], l2, now + timedelta(hours=1)) == 0
    arm["instance"].report_run_failed(arm["instance"].get_run_by_id("started-run"))
    assert release_stale_claims(arm["store"], arm["instance"], l2, now + timedelta(hours=1)) == 3
    assert {s[0] for s in statuses(arm).values()} == {"pending"}
    assert len(tick(arm).run_requests) == 1  # and are batched again


def test_prefix_dates_are_expanded_for_today_and_the_days_before():
    today = datetime(2027, 3, 20)
    assert expand_prefixes(["b/wfi/%Y/%m/%d/", "c/flat/"], 2, today) == [
        ("b", "wfi/2027/03/18/"), ("b", "wfi/2027/03/19/"), ("b", "wfi/2027/03/20/"), ("c", "flat/")]


def test_catch_up_registers_files_no_notice_announced_once(arm):
    day = datetime(2027, 3, 20)
    # Under a prefix of their own: the bucket is shared by the tests of this module.
    lost = [put_image(arm, f"WFI{d:02d}", 3, "2027-03-20T07:00:00", prefix="catchup") for d in (5, 6)]
    arm["s3"].put_object(Bucket=BUCKET, Key="catchup/2027/03/20/readme.txt", Body=b"not an image")
    announce(arm, lost[0])  # its notice arrived; the other's was lost
    l2 = L2Config(bucket_prefixes=[f"{BUCKET}/catchup/%Y/%m/%d/"], catchup_days=1)
    context = dg.build_sensor_context(instance=arm["instance"], resources={"rdmt": arm["rdmt"], "l2": l2})
    first = catchup_tick(context, arm["rdmt"], l2, today=day)
    assert "1 file(s) registered" in first.skip_reason.skip_message
    assert set(statuses(arm)) == {n.filename for n in lost}
    # The listing reached the end of the prefix: the next tick lists it from its start again.
    assert f"{BUCKET}/catchup/2027/03/20/" not in json.loads(first.cursor)
    context = dg.build_sensor_context(instance=arm["instance"], resources={"rdmt": arm["rdmt"], "l2": l2},
                                      cursor=first.cursor)
    again = catchup_tick(context, arm["rdmt"], l2, today=day)
    assert "0 file(s) registered" in again.skip_reason.skip_message
    # The lost notice arrives after all: the same file, which now gets its checksum.
    assert arm["ledger"].record_notices([lost[1]], "late") == 0
    with arm["rdmt"].database().engine.connect() as conn:
        rows = conn.execute(sa.select(l2_file.c.filename, l2_file.c.checksum, l2_file.c.reprocess_number)).all()
    assert sorted(tuple(r) for r in rows) == sorted((n.filename, n.checksum, 0) for n in lost)


def test_catch_up_finds_a_key_that_sorts_before_the_keys_it_listed(arm):
    """Keys under a date prefix do not arrive in lexicographic order (programs, visits)."""
    day = datetime(2027, 3, 20)
    l2 = L2Config(bucket_prefixes=[f"{BUCKET}/order/%Y/%m/%d/"], catchup_days=0)
    later = put_image(arm, "WFI09", 9, "2027-03-20T08:00:00", prefix="order")
    context = dg.build_sensor_context(instance=arm["instance"], resources={"rdmt": arm["rdmt"], "l2": l2})
    first = catchup_tick(context, arm["rdmt"], l2, today=day)
    earlier = put_image(arm, "WFI02", 2, "2027-03-20T08:00:00", prefix="order")  # sorts before `later`
    assert earlier.key < later.key
    context = dg.build_sensor_context(instance=arm["instance"], resources={"rdmt": arm["rdmt"], "l2": l2},
                                      cursor=first.cursor)
    catchup_tick(context, arm["rdmt"], l2, today=day)
    assert {later.filename, earlier.filename} <= set(statuses(arm))


def test_a_backlog_of_whole_batches_goes_in_runs_of_up_to_the_largest_batch(arm):
    announce(arm, *[put_image(arm, f"WFI{d:02d}", 1, "2027-03-20T05:00:00") for d in range(1, 8)])
    requests = tick(arm, batch_size=3, max_batch_size=6).run_requests
    assert len(requests) == 1  # two whole batches of 3 in one run; the seventh file waits
    batches = [s[1] for s in statuses(arm).values() if s[0] == "claimed"]
    assert len(batches) == 6 and set(batches) == {requests[0].tags[BATCH_TAG]}
    assert [s[0] for s in statuses(arm).values()].count("pending") == 1


def test_runs_of_one_batch_each_when_the_largest_batch_is_the_batch(arm):
    announce(arm, *[put_image(arm, f"WFI{d:02d}", 1, "2027-03-20T05:00:00") for d in range(1, 8)])
    requests = tick(arm, batch_size=3, max_batch_size=3, max_wait_seconds=0).run_requests
    batches = [s[1] for s in statuses(arm).values()]
    assert len(requests) == 3 and sorted(batches.count(r.tags[BATCH_TAG]) for r in requests) == [1, 3, 3]
