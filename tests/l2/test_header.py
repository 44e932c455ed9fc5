"""L2 headers from the first bytes of real ASDF files: read locally, and from S3 on a moto server (real boto3 over HTTP).

The identity is checked against `l2_identity` on the same file opened by
roman_datamodels; the hostile cases are bytes a broken or malicious pipeline
could deliver.
"""

from __future__ import annotations

import pickle
from datetime import datetime

import pytest

from rdmt_dagster.l2.header import HeaderError, L2Header, header_from_bytes, read_header
from rdmt_dagster.l2.identity import l2_identity
from rdmt_dagster.synthetic.l2 import l2_filename, scene_for, write_l2

from ..conftest import free_port, moto_on_loopback

BUCKET = "roman-archive"
SHAPE = (256, 256)
ASDF_START = b"#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n--- !core/asdf-1.1.0\n"
IDENTITY = ("filename", "detector", "optical_element", "exposure_start", "program", "visit", "exposure")


def _write(folder, detector="WFI07", exposure=3, shape=SHAPE, **scene):
    scene = scene_for(detector, exposure=exposure, shape=shape, n_stars=50, **scene)
    path, _ = write_l2(folder / l2_filename(scene), scene, catalog=False, compress=False)
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A real, schema-valid ImageModel file (8.6 MB) with a dark and a CRDS context in ``meta.ref_file``."""
    return _write(tmp_path_factory.mktemp("header"), shape=(1024, 1024),
                  ref_file={"dark": "roman_wfi_dark_0042.asdf", "crds_context": "roman_0123.pmap"})


def _opened_identity(path):
    """What the platform records for the file when it opens it whole (roman_datamodels)."""
    import roman_datamodels.datamodels as rdm

    with rdm.open(path) as model:
        info = l2_identity(model, path, "pixel")
    return {name: getattr(info, name) for name in IDENTITY}


def _identity(header: L2Header):
    return {name: getattr(header, name) for name in IDENTITY}


def _edited(path, old: bytes, new: bytes) -> bytes:
    """The file's bytes with one piece of its YAML tree replaced (the tree is all the header reads)."""
    data = path.read_bytes()
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


# --- The identity of real files -------------------------------------------------------------------


def test_header_equals_the_identity_of_the_opened_model(image):
    header = header_from_bytes(image.read_bytes(), image.name)
    assert _identity(header) == _opened_identity(image)
    assert header.detector == "WFI07" and header.exposure == "0003" and header.optical_element == "F158"
    assert header.exposure_start == datetime(2027, 3, 20, 0, 4, 40)  # exposure 3 of scene_for: 2 x 140 s in
    assert header.observation_day == "2027-03-20"
    # The synthetic file holds '?' for every other reference type: those are no reference files.
    assert header.ref_files == {"dark": "roman_wfi_dark_0042.asdf"}
    assert header.crds_context == "roman_0123.pmap"


def test_identity_falls_back_to_the_archive_file_name(image):
    # A pipeline that leaves the detector empty: the archive name still says WFI07, as for the opened model.
    header = header_from_bytes(_edited(image, b"detector: WFI07", b"detector: ''"), image.name)
    assert header.detector == "WFI07" and header.visit == "0000101001001001001"
    renamed = header_from_bytes(image.read_bytes(), "r0000201001001001005_01101_0003_WFI07_cal.asdf")
    assert renamed.program == "00001" and renamed.visit == "0000201001001001005"  # program from meta, visit_id '?'


@pytest.mark.parametrize("start, utc", [
    # A TAI time just after midnight is the previous UTC day: the partition follows UTC.
    (("2027-03-21T00:00:10", {"scale": "tai"}), datetime(2027, 3, 20, 23, 59, 33)),
    ((61484.25, {"format": "mjd"}), datetime(2027, 3, 20, 6, 0)),
    ((2461484.5, {"format": "jd", "scale": "tt"}), datetime(2027, 3, 19, 23, 58, 50, 816000)),
    (("2027:079:01:02:03", {"format": "yday"}), datetime(2027, 3, 20, 1, 2, 3)),
    ((datetime(2027, 3, 20, 1), {"format": "datetime"}), datetime(2027, 3, 20, 1)),
])
def test_exposure_start_in_other_time_formats_and_scales(image, tmp_path, start, utc):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    value, options = start
    path = tmp_path / image.name
    with rdm.open(image) as model:
        model.meta.exposure.start_time = Time(value, **options)
        model.save(path)
    header = header_from_bytes(path.read_bytes(), path.name)
    assert header.exposure_start == utc
    assert _identity(header) == _opened_identity(path)
    assert header.observation_day == utc.date().isoformat()


def test_reference_files_from_uris_paths_and_mappings(tmp_path):
    path = _write(tmp_path, "WFI18", 1, ref_file={
        "dark": "crds://roman_wfi_dark_0042.asdf",
        "flat": "/grp/crds/cache/references/roman/roman_wfi_flat_0007.asdf",
        "refpix": "N/A",
        "crds_context": "crds://roman_0123.pmap",
    })
    header = header_from_bytes(path.read_bytes(), path.name)
    assert header.ref_files == {"dark": "roman_wfi_dark_0042.asdf", "flat": "roman_wfi_flat_0007.asdf"}
    assert header.crds_context == "roman_0123.pmap"
    assert header.detector == "WFI18"

    # Other writers: an entry as a mapping, an upper-case type, the context as context_used.
    data = _edited(path, b"      saturation: '?'", b"      SATURATION: {file: roman_wfi_saturation_0003.asdf}")
    data = data.replace(b"crds: {context: 'crds://roman_0123.pmap'", b"crds: {context_used: roman_0124.pmap", 1)
    header = header_from_bytes(data, path.name)
    assert header.ref_files["saturation"] == "roman_wfi_saturation_0003.asdf"
    assert header.crds_context == "roman_0124.pmap"


def test_tags_build_no_objects(image, tmp_path):
    marker = tmp_path / "executed"
    evil = f"    evil: !!python/object/apply:os.system ['touch {marker}']\n".encode()
    data = _edited(image, b"    model_type: ImageModel\n", b"    model_type: ImageModel\n" + evil)
    assert header_from_bytes(data, image.name) == header_from_bytes(image.read_bytes(), image.name)
    assert not marker.exists()


# --- Hostile and broken bytes ---------------------------------------------------------------------


def _refused(data: bytes, name: str, match: str) -> HeaderError:
    with pytest.raises(HeaderError, match=match) as caught:
        header_from_bytes(data, name)
    assert str(caught.value).startswith(f"{name}: ")
    return caught.value


def test_truncated_tree_is_refused(image):
    _refused(image.read_bytes()[:5000], image.name, "YAML tree does not end")


@pytest.mark.parametrize("data", [b"", b"SIMPLE  =                    T / FITS\n" + bytes(4000), b"\x89PNG\r\n\x1a\n"])
def test_not_asdf_is_refused(data):
    _refused(data, "r0000101001001001001_01101_0001_WFI01_cal.asdf", "not an ASDF file")


def test_asdf_without_a_tree_is_refused():
    _refused(b"#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n\xd3BLK\x00\x30" + bytes(100), "blocks.asdf", "no YAML tree")


def _alias_bomb(levels: int = 9) -> bytes:
    """~600 bytes of nested aliases that expand to 10**levels nodes (as in tests/test_hostile_files.py)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return ASDF_START + "\n".join(lines).encode() + b"\n...\n"


def test_alias_bomb_and_deep_nesting_are_refused():
    _refused(_alias_bomb(), "bomb.asdf", "nested aliases")
    _refused(ASDF_START + b"a: " + b"[" * 600 + b"]" * 600 + b"\n...\n", "deep.asdf", "nested deeper")


def test_broken_yaml_and_other_models_are_refused(image):
    _refused(ASDF_START + b"roman: {meta: [unclosed\n...\n", "broken.asdf", "cannot be read")
    _refused(ASDF_START + b"roman: {meta: {a: \xff\xfe}}\n...\n", "binary.asdf", "cannot be read")
    _refused(ASDF_START + b"other: {meta: {}}\n...\n", "other.asdf", "not a Roman data model")


def test_detector_outside_the_focal_plane_is_refused(image):
    error = _refused(_edited(image, b"detector: WFI07", b"detector: WFI99"), image.name, "WFI01..WFI18")
    assert "WFI99" in str(error)


@pytest.mark.parametrize("name", [
    r"..\\..\\crds\\roman_wfi_dark_0042.asdf",  # a Windows path keeps its separators after the basename
    "references/dark/..",
    "references/dark/",
    r"roman_wfi_dark\x00.asdf",
    "roman wfi dark.asdf",
])
def test_reference_file_name_that_is_no_file_name_is_refused(image, name):
    data = _edited(image, b"dark: roman_wfi_dark_0042.asdf", b'dark: "' + name.encode() + b'"')
    _refused(data, image.name, "meta.ref_file.dark")


def test_crds_context_longer_than_its_column_is_refused(image):
    data = _edited(image, b"context: roman_0123.pmap", b"context: roman_" + b"0" * 60 + b".pmap")
    _refused(data, image.name, "meta.ref_file.crds.context")


def test_header_error_survives_pickling():
    error = HeaderError("x_cal.asdf", "is not an ASDF file")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.filename == "x_cal.asdf" and isinstance(copy, ValueError)


# --- From S3 (moto on loopback) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint():
    import boto3

    with moto_on_loopback() as url:
        boto3.client("s3", region_name="us-east-1", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url


class Gets:
    """The GetObject calls of a client as S3 answered them: (Content-Range, bytes), via a botocore event hook."""

    def __init__(self, client):
        self.calls: list[tuple[str, int]] = []
        client.meta.events.register("after-call.s3.GetObject", self._record)

    def _record(self, parsed, **kwargs):
        self.calls.append((parsed.get("ContentRange", ""), parsed.get("ContentLength", 0)))

    @property
    def bytes(self) -> int:
        return sum(length for _, length in self.calls)


def _client(endpoint, **config):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, config=Config(**config))


def _put(endpoint, key: str, body: bytes) -> None:
    _client(endpoint).put_object(Bucket=BUCKET, Key=key, Body=body)


def test_read_header_reads_the_tree_not_the_object(endpoint, image):
    key = f"wfi/2027/03/20/{image.name}"
    _put(endpoint, key, image.read_bytes())
    size = image.stat().st_size
    s3 = _client(endpoint)
    gets = Gets(s3)
    header = read_header(s3, BUCKET, key)
    assert header == header_from_bytes(image.read_bytes(), image.name)
    assert _identity(header) == _opened_identity(image)
    assert gets.calls == [(f"bytes 0-262143/{size}", 262144)]
    assert gets.bytes < size / 5  # a full-size image compresses to a few MB at the least


def test_read_header_doubles_its_reads_until_the_tree_ends(endpoint, image):
    key = f"wfi/2027/03/20/{image.name}"
    _put(endpoint, key, image.read_bytes())
    size = image.stat().st_size
    tree = image.read_bytes().index(b"\n...\n") + 5
    s3 = _client(endpoint)
    gets = Gets(s3)
    header = read_header(s3, BUCKET, key, first_bytes=1024)
    assert header == header_from_bytes(image.read_bytes(), image.name)
    # Each GET reads on from where the last one stopped, and the bytes read double.
    ends = [1024 * 2**i for i in range(len(gets.calls))]
    assert len(ends) > 1
    assert [c for c, _ in gets.calls] == [f"bytes {start}-{end - 1}/{size}" for start, end in zip([0] + ends, ends)]
    assert tree <= gets.bytes < 2 * tree


def test_read_header_refuses_a_tree_longer_than_max_bytes(endpoint):
    key = "wfi/2027/03/20/r0000101001001001001_01101_0001_WFI01_cal.asdf"
    endless = ASDF_START + b"roman:\n  meta:\n" + b"".join(b"    k%06d: v\n" % i for i in range(20000))
    _put(endpoint, key, endless)
    s3 = _client(endpoint)
    gets = Gets(s3)
    with pytest.raises(HeaderError, match=r"^r0000101001001001001_01101_0001_WFI01_cal\.asdf: YAML tree longer than 16,384"):
        read_header(s3, BUCKET, key, first_bytes=1024, max_bytes=16384)
    assert gets.bytes == 16384 and len(gets.calls) == 5


def test_read_header_stops_at_the_first_bytes_of_a_file_that_is_not_asdf(endpoint):
    key = "wfi/2027/03/20/image.fits"
    _put(endpoint, key, b"SIMPLE  =                    T\n" + bytes(2**20))
    s3 = _client(endpoint)
    gets = Gets(s3)
    with pytest.raises(HeaderError, match=r"^image\.fits: is not an ASDF file"):
        read_header(s3, BUCKET, key, first_bytes=4096)
    assert gets.bytes == 4096


def test_read_header_refuses_bombs_and_empty_objects(endpoint):
    _put(endpoint, "wfi/bomb_cal.asdf", _alias_bomb())
    _put(endpoint, "wfi/empty_cal.asdf", b"")
    s3 = _client(endpoint)
    with pytest.raises(HeaderError, match=r"^bomb_cal\.asdf: .*nested aliases"):
        read_header(s3, BUCKET, "wfi/bomb_cal.asdf")
    with pytest.raises(HeaderError, match=r"^empty_cal\.asdf: is empty"):
        read_header(s3, BUCKET, "wfi/empty_cal.asdf")


def test_missing_object_is_a_header_error_but_s3_failures_are_not(endpoint):
    from botocore.exceptions import ClientError, EndpointConnectionError

    name = "r0000101001001001001_01101_0009_WFI01_cal.asdf"
    with pytest.raises(HeaderError, match=rf"^{name}: does not exist"):
        read_header(_client(endpoint), BUCKET, f"wfi/2027/03/20/{name}")
    # No bucket, no server: the platform's problem, to retry or alert on; the file may be fine.
    with pytest.raises(ClientError) as caught:
        read_header(_client(endpoint), "no-such-bucket", f"wfi/2027/03/20/{name}")
    assert not isinstance(caught.value, HeaderError)
    offline = _client(f"http://127.0.0.1:{free_port()}", retries={"max_attempts": 1}, connect_timeout=2)
    with pytest.raises(EndpointConnectionError):
        read_header(offline, BUCKET, f"wfi/2027/03/20/{name}")


def test_object_replaced_between_reads_is_not_spliced(endpoint, image):
    # The second GET asks for the same ETag as the first: a new version between them is an S3 error (412).
    from botocore.exceptions import ClientError

    key = "wfi/2027/03/20/replaced_cal.asdf"
    _put(endpoint, key, image.read_bytes())
    s3 = _client(endpoint)
    s3.meta.events.register("after-call.s3.GetObject",
                            lambda **kwargs: _put(endpoint, key, image.read_bytes() + b"\n"))
    with pytest.raises(ClientError, match="PreconditionFailed|412"):
        read_header(s3, BUCKET, key, first_bytes=1024)
