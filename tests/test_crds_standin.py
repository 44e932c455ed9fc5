"""The CRDS stand-in against the real ``crds`` client: protocol, mappings, downloads, failure modes."""

import hashlib

import asdf
import pytest

from rdmt_dagster.crds_standin import CRDSStandIn


def small_reference(path, reftype="DARK", detector="WFI01", instrument="WFI", useafter="2027-01-01T00:00:00.000"):
    """A tiny ASDF file with the ``roman.meta`` a CRDS delivery needs (no pixels)."""
    tree = {"roman": {"meta": {
        "reftype": reftype, "useafter": useafter,
        "instrument": {"name": instrument, "detector": detector, "optical_element": "F158"},
        "exposure": {"type": "WFI_IMAGE", "p_exptype": "WFI_IMAGE|WFI_GRISM|WFI_PRISM|"},
    }}, "payload": path.name * 20}
    asdf.AsdfFile(tree).write_to(path)
    return path


@pytest.fixture
def crds_client(tmp_path, monkeypatch):
    """A started stand-in with the real client configured for it and a fresh cache."""
    from crds.client import api
    from crds.core import config, utils

    standin = CRDSStandIn(tmp_path / "server").start()
    monkeypatch.setenv("CRDS_SERVER_URL", standin.url)
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "cache"))
    monkeypatch.setenv("CRDS_CLIENT_TIMEOUT_SECONDS", "10")
    api.set_crds_server(standin.url)
    utils.clear_function_caches()
    config.CRDS_REF_SUBDIR_MODE = "None"
    yield standin, api
    standin.close()
    utils.clear_function_caches()


def test_delivery_makes_a_context_the_client_reads(tmp_path, crds_client):
    from crds.core import rmap

    standin, api = crds_client
    first = standin.default_context
    darks = [small_reference(tmp_path / f"roman_wfi_dark_000{i}.asdf", detector=f"WFI0{i}") for i in (1, 2)]
    flat = small_reference(tmp_path / "roman_wfi_flat_0001.asdf", reftype="FLAT")
    context = standin.deliver([*darks, flat])

    assert context != first and standin.contexts == [first, context]
    assert api.get_default_context("roman", "latest") == context
    names = api.get_mapping_names(context)
    assert sorted(names) == sorted([context, "roman_wfi_0001.imap", "roman_wfi_dark_0001.rmap",
                                    "roman_wfi_flat_0001.rmap"])
    api.dump_mappings(context, mappings=names)
    pmap = rmap.load_mapping(context)  # checks every sha1sum header
    imap = pmap.get_imap("wfi")
    assert imap.get_rmap("dark").reference_names() == ["roman_wfi_dark_0001.asdf", "roman_wfi_dark_0002.asdf"]
    header = {"ROMAN.META.INSTRUMENT.NAME": "WFI", "ROMAN.META.INSTRUMENT.DETECTOR": "WFI02",
              "ROMAN.META.EXPOSURE.TYPE": "WFI_IMAGE", "ROMAN.META.EXPOSURE.START_TIME": "2028-01-01 00:00:00"}
    assert pmap.get_best_references(header, include=["dark"]) == {"dark": "roman_wfi_dark_0002.asdf"}

    paths = api.dump_references(context, baserefs=["roman_wfi_dark_0002.asdf"])
    local = paths["roman_wfi_dark_0002.asdf"]
    assert str(tmp_path / "cache") in local
    assert hashlib.sha1(open(local, "rb").read()).digest() == hashlib.sha1(darks[1].read_bytes()).digest()
    assert sorted(api.get_reference_names(context)) == sorted(p.name for p in [*darks, flat])


def test_a_later_file_with_the_same_selection_replaces_the_earlier(tmp_path, crds_client):
    standin, _ = crds_client
    one = standin.deliver([small_reference(tmp_path / "roman_wfi_dark_0001.asdf")])
    two = standin.deliver([small_reference(tmp_path / "roman_wfi_dark_0002.asdf")])
    three = standin.deliver([small_reference(tmp_path / "roman_wfi_dark_0003.asdf", useafter="2028-01-01T00:00:00")])
    assert standin.references(one) == ["roman_wfi_dark_0001.asdf"]
    assert standin.references(two) == ["roman_wfi_dark_0002.asdf"]
    assert standin.references(three) == ["roman_wfi_dark_0002.asdf", "roman_wfi_dark_0003.asdf"]
    with pytest.raises(ValueError, match="already in CRDS"):
        standin.deliver([tmp_path / "roman_wfi_dark_0001.asdf"])
    with pytest.raises(FileNotFoundError, match="missing.asdf"):
        standin.deliver([tmp_path / "missing.asdf"])


def test_failure_modes(tmp_path, crds_client):
    from crds.core import exceptions

    standin, api = crds_client
    context = standin.deliver([small_reference(tmp_path / "roman_wfi_dark_0001.asdf")])
    port = standin.port

    standin.stop()  # connection refused
    with pytest.raises(exceptions.ServiceError, match="refused"):
        api.get_default_context.uncached("roman", "latest")
    standin.start()
    assert standin.port == port
    assert api.get_default_context.uncached("roman", "latest") == context

    standin.mode = "unavailable"
    with pytest.raises(exceptions.ServiceError, match="503"):
        api.get_default_context.uncached("roman", "latest")

    standin.mode = "garbage"
    with pytest.raises(ValueError):  # HTML where JSON was expected
        api.get_default_context.uncached("roman", "latest")

    standin.mode = "garbage_files"  # JSON-RPC fine, bytes corrupted: the client's sha1sum check fails
    with pytest.raises(exceptions.CrdsDownloadError, match="sha1sum"):
        api.dump_references(context, baserefs=["roman_wfi_dark_0001.asdf"])

    standin.mode = "ok"
    with pytest.raises(exceptions.ServiceError, match="unknown context"):
        api.get_mapping_names("roman_0999.pmap")
