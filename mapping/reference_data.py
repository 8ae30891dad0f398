"""Reference data files: the formulary and payer/site profiles, read and checked.

The coding core only indexes what it is given; reading files and reporting bad ones (with
the file name and the failing field) happens here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the dev dependencies
from pydantic import ValidationError

from coding_core.formulary import Formulary, FormularyEntry, normalize_name
from coding_core.ndc import normalize_ndc, parse_ndc
from coding_core.profile import Profile
from mapping.chargemaster import ChargemasterError, read_chargemaster
from mapping.errors import summarize_validation_errors

BUNDLED_FORMULARY = "coding_core/data/formulary.json"


class ReferenceDataError(ValueError):
    """A formulary or profile file is missing, unparsable or inconsistent."""


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ReferenceDataError(f"{path}: cannot read: {e.strerror}") from None


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys silently; in reference data that hides an edit."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _parse(text: str, name: str) -> Any:
    is_yaml = name.endswith((".yaml", ".yml"))
    try:
        if is_yaml:
            return yaml.safe_load(text)
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ReferenceDataError(f"{name}: not valid {'YAML' if is_yaml else 'JSON'}: {e}") from None
    except _DuplicateKey as e:
        raise ReferenceDataError(f"{name}: key '{e.args[0]}' appears twice in one object") from None


def _check_unique(name: str, entries: Iterable[FormularyEntry]) -> None:
    """Every code and name must resolve to one drug: the index would otherwise pick silently."""
    claimed: dict[tuple[str, str], str] = {}
    codes: set[str] = set()
    for e in entries:
        if e.hcpcs.upper() in codes:
            raise ReferenceDataError(f"{name}: HCPCS code '{e.hcpcs}' appears in two entries")
        codes.add(e.hcpcs.upper())
        keys = [("RxNorm code", c) for c in e.rxnorm]
        for c in e.ndc:
            if parse_ndc(c).eleven is None:
                raise ReferenceDataError(f"{name}: {e.hcpcs}: NDC '{c}' is not an NDC in a known layout (10 digits "
                                         "hyphenated 4-4-2, 5-3-2 or 5-4-1, or 11 digits)")
        keys += [("NDC", normalize_ndc(c)) for c in e.ndc]
        keys += [("local code", c.upper()) for c in e.local_codes]
        keys += [("name", normalize_name(n)) for n in (e.name, *e.synonyms)]
        for key in dict.fromkeys(keys):
            other = claimed.setdefault(key, e.hcpcs)
            if other != e.hcpcs:
                raise ReferenceDataError(f"{name}: {key[0]} '{key[1]}' is claimed by both {other} and {e.hcpcs}")


def formulary_from_text(text: str, name: str) -> Formulary:
    data = _parse(text, name)
    if not isinstance(data, dict) or "drugs" not in data or "version" not in data:
        raise ReferenceDataError(f"{name}: a formulary is an object with 'version' and 'drugs'")
    if not isinstance(data["version"], (str, int, float)) or not str(data["version"]).strip():
        raise ReferenceDataError(f"{name}: 'version' must be a non-empty string")
    if not isinstance(data["drugs"], list):
        raise ReferenceDataError(f"{name}: 'drugs' must be a list")
    entries = []
    for i, d in enumerate(data["drugs"]):
        try:
            entries.append(FormularyEntry.model_validate(d))
        except ValidationError as e:
            raise ReferenceDataError(f"{name}: drugs[{i}]: {summarize_validation_errors(e.errors())}") from None
    _check_unique(name, entries)
    return Formulary(str(data["version"]), entries)


@lru_cache(maxsize=1)
def _bundled() -> Formulary:
    text = (resources.files("coding_core") / "data" / "formulary.json").read_text(encoding="utf-8")
    return formulary_from_text(text, BUNDLED_FORMULARY)


def load_formulary(path: str | Path | None = None) -> Formulary:
    """The bundled formulary (read once), or the one in ``path``."""
    if path is None:
        return _bundled()
    return formulary_from_text(_read(path), str(path))


def load_profile(path: str | Path | None = None) -> Profile:
    """A payer/site profile from YAML or JSON; the default CMS facility profile when None."""
    if path is None:
        return Profile()
    data = _parse(_read(path), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReferenceDataError(f"{path}: a profile is a mapping of settings")
    cdm = data.get("chargemaster")
    if isinstance(cdm, dict) and cdm.get("file") is not None:
        if cdm.get("items"):
            raise ReferenceDataError(f"{path}: chargemaster: give file or items, not both")
        cdm_path = Path(path).parent / str(cdm["file"])
        try:
            data = {**data, "chargemaster": {**cdm, "items": read_chargemaster(_read(cdm_path), f"chargemaster {cdm['file']}")}}
        except ChargemasterError as e:
            raise ReferenceDataError(f"{path}: {e}") from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        raise ReferenceDataError(f"{path}: {summarize_validation_errors(e.errors())}") from None
    try:
        ZoneInfo(profile.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReferenceDataError(f"{path}: timezone: '{profile.timezone}' is not an IANA time zone") from None
    return profile


def formulary_for(profile: Profile, formulary: Formulary | None = None) -> Formulary:
    """The bundled (or given) formulary with the profile's site overrides applied."""
    base = formulary if formulary is not None else load_formulary()
    if not profile.formulary_overrides:
        return base
    where = f"profile {profile.name}: formulary_overrides"
    try:
        merged = base.with_overrides(profile.formulary_overrides)
    except ValidationError as e:
        raise ReferenceDataError(f"{where}: {summarize_validation_errors(e.errors())}") from None
    _check_unique(where, merged.entries)
    return merged
