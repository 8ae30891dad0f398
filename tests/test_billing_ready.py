"""Billing-ready ChargeItems: revenue codes, review flags (and lines held for review), and
Bundle fullUrls a strict FHIR server accepts in a transaction."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from pydantic import ValidationError

from coding_core.profile import Profile
from coding_core.revenue_codes import revenue_code
from mapping.chargeitem_out import (EXT_REVENUE, EXT_REVIEW_FLAG, FULL_URL_NAMESPACE, REVENUE_SYSTEM, bundle, revision_bundle,
                                    to_charge_items)
from tests.builders import CHEMO, NS, adm, run
from tests.test_chargeitem_out import ENCOUNTER

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("code, revenue", [
    ("96360", "0260"), ("96365", "0260"), ("96374", "0260"), ("96379", "0260"),
    ("96401", "0331"), ("96406", "0331"), ("96409", "0335"), ("96413", "0335"), ("96415", "0335"), ("96549", "0335"),
    ("96521", "0260"), ("96523", "0260"),
    ("J7030", "0258"), ("J7120", "0258"), ("J9312", "0636"), ("J3490", "0636"), ("Q5103", "0636"), ("P9016", "0390"),
    ("99199", None),
])
def test_default_revenue_codes(code, revenue):
    assert revenue_code(code, Profile()) == revenue


def test_the_profile_overrides_revenue_codes_narrowest_first():
    profile = Profile(revenue_codes={"96360-96379": "0261", "96365-96368": "0262", "96365": "0269", "J7030": "0250"})
    assert [revenue_code(c, profile) for c in ("96360", "96366", "96365", "J7030", "J7040", "96413")] == \
        ["0261", "0262", "0269", "0250", "0258", "0335"]


@pytest.mark.parametrize("bad", [{"revenue_codes": {"infusions": "0260"}}, {"revenue_codes": {"96365": "260"}},
                                 {"fhir_base_url": "https://fhir.example.org/r4/"}, {"fhir_base_url": "fhir.example.org"}])
def test_bad_billing_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        Profile(**bad)


def _ext(item: dict, url: str) -> list:
    return [e for e in item.get("extension", []) if e["url"] == url]


def _items(profile: Profile | None = None) -> dict[str, dict]:
    """Chemotherapy 09:00-10:40, then saline documented with a start only (its stop derived, flagged)."""
    result = run(adm(CHEMO, "09:00", "10:40", id="c", dose=(700, "mg")),
                 adm(NS, "10:45", None, id="h", volume=1000, rate=500))
    return {i["code"]["coding"][0]["code"]: i for i in to_charge_items(result, ENCOUNTER, profile)}


def test_every_line_has_its_revenue_code_and_each_warning_about_it_is_a_review_flag():
    items = _items()
    assert {code: _ext(i, EXT_REVENUE)[0]["valueCoding"] for code, i in items.items()}["96413"] == {"system": REVENUE_SYSTEM, "code": "0335"}
    assert all(len(_ext(i, EXT_REVENUE)) == 1 for i in items.values())
    hydration = [i for c, i in items.items() if c in ("96361", "96360")]
    assert hydration and all("derived-stop-time" in [e["valueCode"] for e in _ext(i, EXT_REVIEW_FLAG)] for i in hydration)
    assert _ext(items["96413"], EXT_REVIEW_FLAG) == []  # nothing to review about the chemotherapy
    for i in items.values():  # a flag for every warning note, and no other
        warned = {n["text"].split(":")[0].removeprefix("warning ") for n in i["note"][1:]}
        assert {e["valueCode"] for e in _ext(i, EXT_REVIEW_FLAG)} == warned
        ChargeItem.model_validate(i)


def test_flagged_lines_are_held_as_planned_when_the_profile_says_so():
    held = _items(Profile(hold_flagged_lines=True))
    assert {c: i["status"] for c, i in held.items() if _ext(i, EXT_REVIEW_FLAG)} and \
        all(i["status"] == ("planned" if _ext(i, EXT_REVIEW_FLAG) else "billable") for i in held.values())
    assert held["96413"]["status"] == "billable"
    assert all(i["status"] == "billable" for i in _items().values())  # by default nothing is held


def test_full_urls_are_name_based_uuids_or_urls_on_the_configured_server():
    items = list(_items().values())
    doc = revision_bundle("enc-1", 1, items)
    urls = [e["fullUrl"] for e in doc["entry"]]
    assert len(set(urls)) == len(urls)
    for entry in doc["entry"]:
        rid = entry["resource"]["id"]
        assert entry["fullUrl"] == f"urn:uuid:{uuid.uuid5(FULL_URL_NAMESPACE, rid)}"
        assert entry["request"] == {"method": "PUT", "url": f"ChargeItem/{rid}"}
    assert revision_bundle("enc-1", 2, items)["entry"][0]["fullUrl"] == urls[0]  # the same line, the same URL
    on_server = revision_bundle("enc-1", 1, items, base_url="https://fhir.example.org/r4")
    assert all(e["fullUrl"] == "https://fhir.example.org/r4/" + e["request"]["url"] for e in on_server["entry"])
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle(items)["entry"])


def test_transaction_bundles_follow_the_fhir_r4_transaction_rules():
    """The R4 rules a server applies to a transaction, checked here (not yet against a running
    FHIR server): bdl-7 (fullUrl unique), bdl-8 (fullUrl has no version), a transaction entry
    has a request, PUT's url is [type]/[id] and matches the resource, a urn:uuid fullUrl is a
    valid UUID."""
    for doc in (revision_bundle("enc-1", 1, list(_items().values())),
                revision_bundle("enc-1", 1, list(_items().values()), base_url="https://fhir.example.org/r4")):
        Bundle.model_validate(doc)
        urls = [e["fullUrl"] for e in doc["entry"]]
        assert len(urls) == len(set(urls)) and not any("/_history/" in u for u in urls)
        for e in doc["entry"]:
            res, req = e["resource"], e["request"]
            assert req["method"] == "PUT" and req["url"] == f"{res['resourceType']}/{res['id']}"
            if e["fullUrl"].startswith("urn:uuid:"):
                uuid.UUID(e["fullUrl"].removeprefix("urn:uuid:"))
            else:
                assert re.fullmatch(r"https?://\S+/ChargeItem/[A-Za-z0-9\-.]{1,64}", e["fullUrl"])


def test_the_readme_lists_every_review_flag_the_coding_core_raises():
    raised = set()
    for path in (ROOT / "coding_core").glob("*.py"):
        raised |= set(re.findall(r'(?:warn|Note)\("([a-z0-9-]+)"', path.read_text()))
    readme = (ROOT / "docs" / "output-chargeitem.md").read_text()
    listed = set(re.findall(r"`([a-z0-9-]+)`", readme.split("Review flags (warning codes):", 1)[1].split("\n\n", 1)[0]))
    assert raised and listed == raised | {"missing-dose", "in-progress-at-close"}  # raised from a variable / the status table
    own = set(re.findall(r'flags\.append\(\("([a-z0-9-]+)"', (ROOT / "mapping" / "chargeitem_out.py").read_text()))
    section = readme.split("Review flags the output adds", 1)[1].split("\n\n", 1)[0]
    assert own and set(re.findall(r"`(no-[a-z0-9-]+)`", section)) == own
