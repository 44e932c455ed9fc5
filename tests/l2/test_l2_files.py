"""L2 files end to end without the platform: identity, catalogs, ``rdmt check``."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from rdmt_dagster.cli import main
from rdmt_dagster.l2.catalog import CatalogError, read_catalog, write_catalog
from rdmt_dagster.l2.identity import parse_filename
from rdmt_dagster.synthetic.l2 import L2Scene, catalog_path, write_l2

SMALL = dict(shape=(512, 512), n_stars=200)
NAME = "r0000101001001001001_01101_{:04d}_WFI07_cal.asdf"


@pytest.fixture(scope="module")
def exposures(tmp_path_factory):
    """Three exposures of one field on WFI07, the third with its WCS off by 0.5 arcsec."""
    folder = tmp_path_factory.mktemp("l2")
    paths = []
    for exposure, shift in ((1, 0.0), (2, 0.0), (3, 0.5)):
        scene = L2Scene(**SMALL, detector="WFI07", exposure=exposure, seed=exposure, star_seed=7,
                        start_time=f"2027-03-20T00:{exposure:02d}:00", wcs_shift=(0.0, shift))
        path, _ = write_l2(folder / NAME.format(exposure), scene, catalog=exposure == 1)
        paths.append(path)
    return paths


def test_archive_file_names_are_parsed():
    assert parse_filename("r0000101001001001001_01101_0001_WFI01_cal.asdf") == {
        "program": "00001", "visit": "0000101001001001001", "exposure": "0001", "detector": "WFI01"}
    assert parse_filename("other.asdf") == {}


def test_catalog_formats_agree_and_bad_catalogs_are_named(tmp_path):
    ra, dec, mag = np.array([270.0, 270.1]), np.array([-28.0, -28.1]), np.array([18.0, 19.0])
    a = read_catalog(write_catalog(tmp_path / "c.ecsv", ra, dec, mag))
    b = read_catalog(write_catalog(tmp_path / "c.parquet", ra, dec, mag))
    assert np.array_equal(a.ra, b.ra) and np.array_equal(a.mag, b.mag)
    with pytest.raises(CatalogError, match="needs columns 'ra' and 'dec'"):
        read_catalog(_without_dec(tmp_path))
    with pytest.raises(CatalogError, match="proper motions but no epoch"):
        read_catalog(write_catalog(tmp_path / "pm.parquet", ra, dec, pmra=mag, pmdec=mag))
    with pytest.raises(CatalogError, match="unknown catalog format"):
        (tmp_path / "c.txt").write_text("ra dec\n")
        read_catalog(tmp_path / "c.txt")


def _without_dec(folder):
    from astropy.table import Table

    path = folder / "nodec.ecsv"
    Table({"ra": [1.0], "declination": [2.0]}).write(path, format="ascii.ecsv", overwrite=True)
    return path


def _check_json(capsys, *args):
    code = main(["check", "--json", *map(str, args)])
    return code, json.loads(capsys.readouterr().out)


def test_check_runs_every_l2_monitor_once_per_file(exposures, capsys):
    catalog = catalog_path(exposures[0])
    # noise_1f needs a full detector (the readout geometry); these images are small.
    code, doc = _check_json(capsys, "--catalog", catalog, "--monitors", "astrometry,psf,pixel", *exposures)
    entries = doc["files"]
    monitors = {e["monitor"] for e in entries}
    assert monitors == {"astrometry", "psf", "pixel"}
    assert len(entries) == len(exposures) * len(monitors)
    for e in entries:
        assert e["arm"] == "l2" and e["detector"] == "WFI07" and e["optical_element"] == "F158"
        assert e["useafter"] is None and e["exposure_start"].startswith("2027-03-20T00:0")
        assert e["program"] == "00001" and e["visit"] == "0000101001001001001"
    by_key = {(e["file"].rsplit("/", 1)[-1], e["monitor"]): e for e in entries}
    third = by_key[(NAME.format(3), "astrometry")]
    dec = next(m for m in third["metrics"] if m["metric"] == "detector_astrometric_offset_median_dec")
    assert dec["value"] == pytest.approx(0.5, abs=0.005)
    assert dec["evaluations"]["soc"]["passed"] is False
    # Compared with the previous exposure of the same detector and optical element, by exposure start.
    assert dec["evaluations"]["change"]["compared_with"] == NAME.format(2)
    assert code == 1


def test_check_chooses_monitors_and_reports_a_missing_catalog(exposures, capsys):
    code, doc = _check_json(capsys, "--monitors", "astrometry", exposures[0])
    assert [e["monitor"] for e in doc["files"]] == ["astrometry"]
    entry = doc["files"][0]
    assert entry["status"] == "error" and NAME.format(1) in entry["error"] and "catalog" in entry["error"]
    assert code == 2
    assert main(["check", "--monitors", "astromety", str(exposures[0])]) == 2
    assert "unknown monitor" in capsys.readouterr().err


@pytest.mark.parametrize("detector", ["WFI05/../../../escape", "<img src=x onerror=alert(1)>", "WFI19", "", None])
def test_hostile_detector_is_a_clear_error(detector):
    from types import SimpleNamespace

    from rdmt_dagster.l2.identity import l2_identity
    from rdmt_dagster.science.identity import IdentityError, reference_identity

    meta = SimpleNamespace(instrument=SimpleNamespace(detector=detector, optical_element="F158"), reftype="DARK")
    model = SimpleNamespace(meta=meta)
    with pytest.raises(IdentityError, match="WFI01..WFI18"):
        l2_identity(model, "/data/x_cal.asdf", "psf")
    with pytest.raises(IdentityError, match="WFI01..WFI18"):
        reference_identity(model, "/data/x.asdf", "dark")


def test_exposure_start_is_the_time_order(exposures):
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.science.measure import identities

    with rdm.open(exposures[1]) as model:
        infos = identities(model, exposures[1])
    assert {i.monitor for i in infos} >= {"astrometry", "psf"}
    assert all(i.exposure_start == datetime(2027, 3, 20, 0, 2) and i.series[1:] == ("WFI07", "F158") for i in infos)
