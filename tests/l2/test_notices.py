"""Notices of new L2 files: the three accepted bodies and what is refused."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from rdmt_dagster.l2.notices import NoticeError, parse_notice

NAME = "r0000101001001001001_01101_0001_WFI01_cal.asdf"
KEY = f"wfi/2027/03/20/{NAME}"


def archive(**changes) -> dict:
    message = {
        "archiveBucket": "roman-archive", "archiveObjectKey": KEY, "filename": NAME,
        "fileType": "science_wfi_level_2", "fileCreationTimestamp": "2027-03-20T00:02:19.149000Z",
        "reprocessingState": "none", "checksum": "d41d8cd98f00b204e9800998ecf8427e", "fileSize": 214440438,
    }
    message.update(changes)
    return message


def sns(message) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "x", "Message": json.dumps(message)})


def test_archive_notice_in_an_sns_envelope():
    (notice,) = parse_notice(sns(archive()))
    assert (notice.bucket, notice.key, notice.filename) == ("roman-archive", KEY, NAME)
    assert notice.created == datetime(2027, 3, 20, 0, 2, 19, 149000)
    assert notice.reprocessing == "none" and notice.size == 214440438
    assert notice.identity == ("roman-archive", KEY, "d41d8cd98f00b204e9800998ecf8427e")


def test_s3_event_with_an_url_encoded_key():
    body = {"Records": [{"eventTime": "2027-03-20T00:02:20.000Z", "s3": {
        "bucket": {"name": "roman-archive"},
        "object": {"key": KEY.replace("/", "/").replace("_", "%5F"), "size": 10, "eTag": "\"abc123\""}}}]}
    (notice,) = parse_notice(json.dumps(body))
    assert notice.key == KEY and notice.checksum == "abc123" and notice.size == 10


def test_minimal_notice_chooses_monitors():
    (notice,) = parse_notice(json.dumps({"bucket": "roman-archive", "key": KEY, "monitors": ["noise_1f"]}))
    assert notice.monitors == ("noise_1f",)


def test_guide_windows_are_known_but_not_monitored():
    assert parse_notice(sns(archive(fileType="guide_window_wfi_level_1"))) == []


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"),
    (json.dumps([1, 2]), "not a JSON object"),
    (json.dumps({"hello": 1}), "neither"),
    (sns(archive(fileType="science_nirspec")), "unknown"),
    (sns(archive(reprocessingState="maybe")), "reprocessingState"),
    (sns(archive(archiveBucket="Bad_Bucket")), "bucket"),
    (sns(archive(archiveObjectKey="wfi/../../etc/" + NAME)), "'..'"),
    (sns(archive(archiveObjectKey="wfi/x\n/" + NAME)), "control"),
    (sns(archive(filename="evil.sh")), "not an L2 image name"),
    (sns(archive(filename="r0000101001001001001_01101_0002_WFI01_cal.asdf")), "does not end the key"),
    (sns(archive(fileCreationTimestamp="yesterday")), "fileCreationTimestamp"),
    (sns(archive(fileSize=-1)), "negative"),
    (json.dumps({"bucket": "roman-archive", "key": KEY, "monitors": "all"}), "monitors"),
    (b"\xff\xfe", "UTF-8"),
])
def test_malformed_notices_say_why(body, reason):
    with pytest.raises(NoticeError, match=reason):
        parse_notice(body)
