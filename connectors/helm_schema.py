"""The parts of the Helm chart's ``values.schema.json`` generated from the worker's own models,
so ``helm install`` refuses the profile (and inline formulary entries) the worker would refuse:

* ``worker.profile``: :class:`coding_core.profile.Profile`, as ``load_profile`` validates it;
* ``worker.formulary.content``: empty (null), the formulary's text, or a mapping whose ``drugs``
  are each a :class:`coding_core.formulary.FormularyEntry`, as ``load_formulary`` validates them.

Every ``$ref`` is inlined (each generated part stands alone where Helm's validator reads it)
and titles are dropped.  The rest of the schema is written by hand and left as it is.

    python -m connectors.helm_schema            # rewrite those parts of values.schema.json
    python -m connectors.helm_schema --check    # exit 1 when the committed schema is stale

tests/test_helm.py fails when the committed schema and the models disagree.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from coding_core.formulary import FormularyEntry
from coding_core.profile import Profile
from connectors.generated import regenerate

VALUES_SCHEMA = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "infusion-charges" / "values.schema.json"


# Keywords whose value is a schema, a list of schemas or a mapping of names to schemas.
_SCHEMA = {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
_SCHEMAS = {"anyOf", "allOf", "oneOf", "prefixItems"}
_NAMED = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``node`` with each ``{"$ref": "#/$defs/X", ...}`` replaced by X (merged with its siblings)."""
    if isinstance(node, list):
        return [_inline(n, defs, seen) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    ref = node.get("$ref")
    if ref is not None:
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in defs:
            raise ValueError(f"cannot inline {ref}")
        if name in seen:
            raise ValueError(f"{name} refers to itself: it cannot be inlined")
        out.update(_inline(defs[name], defs, (*seen, name)))
    for key, value in node.items():
        if key in ("$ref", "$defs", "title"):
            continue
        if key in _SCHEMA or key in _SCHEMAS:
            out[key] = _inline(value, defs, seen)
        elif key in _NAMED:
            out[key] = {k: _inline(v, defs, seen) for k, v in value.items()}
        else:
            out[key] = value
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema pydantic validates ``model`` with, self-contained (no ``$ref``)."""
    schema = model.model_json_schema(mode="validation")
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


def _inline_formulary() -> dict[str, Any]:
    """What ``load_formulary`` reads (mapping/reference_data.formulary_from_text), as a value."""
    return {"anyOf": [
        {"type": "null"},
        {"type": "string"},
        {"type": "object", "required": ["version", "drugs"],
         "properties": {"version": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}]},
                        "drugs": {"type": "array", "items": model_schema(FormularyEntry)}}},
    ]}


# Where each generated schema goes: a path of keys from the root of values.schema.json.
GENERATED: dict[tuple[str, ...], Callable[[], dict[str, Any]]] = {
    ("properties", "worker", "properties", "profile"): lambda: model_schema(Profile),
    ("properties", "worker", "properties", "formulary", "properties", "content"): _inline_formulary,
}


def updated(values_schema: dict[str, Any]) -> dict[str, Any]:
    """``values_schema`` with every generated part written from its model."""
    out = copy.deepcopy(values_schema)
    for path, make in GENERATED.items():
        node: Any = out
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = make()
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.helm_schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=Path, default=VALUES_SCHEMA, help="the chart's values.schema.json")
    parser.add_argument("--check", action="store_true", help="only check: exit 1 when the file is stale")
    args = parser.parse_args(argv)
    # The hand-written rest of the schema is kept: the generated parts replace theirs in it.
    return regenerate(args.schema, lambda text: render(updated(json.loads(text or "{}"))), args.check,
                      "python -m connectors.helm_schema")


if __name__ == "__main__":
    sys.exit(main())
