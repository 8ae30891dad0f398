"""Exact fhir.resources validation at a fraction of its cost, for resources built from a template.

What ``fhir.resources`` checks when it validates a resource splits in two:

* the *structure*: which elements are present (unknown ones are refused), lists versus single
  values, choice types (one ``[x]`` at most, or a required one), required elements, no null in
  a list of complex types, the resource type — all decided by the keys, nesting, list lengths
  and JSON types alone (the *shape*);
* each *primitive value* against the FHIR type of its element (``id``, ``code``, ``dateTime``,
  ``uri``, …), one value at a time.

It checks nothing that ties two values together (it does not check value sets or reference
targets).  The ChargeItems this product writes come from one template and have few shapes,
so :class:`ShapeValidator` validates a resource of a new shape in full with fhir.resources,
remembers the shape, and for a resource of a known shape validates only its primitive values,
each with the pydantic type fhir.resources itself declares for that element.  The verdicts
agree with full validation (``tests/test_fhir_shapes.py`` checks it on valid and mutated
resources); the cost falls from ~0.7 ms to a few tens of microseconds per ChargeItem.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter

Path = tuple[str, ...]
Shape = tuple[Any, ...]
_LIST, _DICT = "[", "{"


class ShapeValidator:
    def __init__(self, model: type[BaseModel], max_shapes: int = 4096, max_values: int = 50_000):
        self.model = model
        self.max_shapes, self.max_values = max_shapes, max_values
        self._shapes: dict[Shape, None] = {}
        self._checks: dict[Path, Callable[[Any], Any]] = {}
        # (path, type, value) of primitive values already found valid: code systems, units,
        # codes and extension URLs repeat in nearly every resource.  Bounded: emptied when full.
        self._valid: set[tuple[Path, type, Any]] = set()
        self.full = self.fast = 0  # validations done in full / by primitive values only

    def validate(self, resource: dict[str, Any]) -> None:
        """Raise (as fhir.resources would: ``pydantic.ValidationError``) unless ``resource`` is valid."""
        self.parse(resource)

    def parse(self, resource: dict[str, Any]) -> Any:
        """The validated resource, read like a fhir.resources model: the model itself (new
        shape), or a :class:`FhirView` whose primitive values are converted by the same types
        (known shape).  An invalid resource raises fhir.resources' own error."""
        leaves: list[tuple[Path, Any]] = []
        shape = _shape(resource, (), leaves)
        if shape in self._shapes:
            checks, valid = self._checks, self._valid
            try:
                for path, value in leaves:
                    key = (path, value.__class__, value)
                    if key not in valid:
                        checks[path](value)
                        if len(valid) >= self.max_values:
                            valid.clear()
                        valid.add(key)
            except (ValueError, TypeError):  # pydantic.ValidationError is a ValueError
                return self.model.model_validate(resource)  # raises, with the element's location
            self.fast += 1
            return FhirView(resource, (), checks)
        model = self.model.model_validate(resource)
        self.full += 1
        self._learn(shape, leaves)
        return model

    def _learn(self, shape: Shape, leaves: list[tuple[Path, Any]]) -> None:
        """Remember a validated shape when every leaf's element type is known (and no null)."""
        if len(self._shapes) >= self.max_shapes:
            return
        checks = {}
        for path, value in leaves:
            check = self._checks.get(path) or _leaf_check(self.model, path)
            if check is None or value is None:
                return
            checks[path] = check
        self._checks.update(checks)
        self._shapes[shape] = None


class FhirView:
    """A validated resource dict read like a fhir.resources model: ``view.dosage.route.coding``;
    primitive values come back as fhir.resources returns them (``dateTime`` -> datetime or
    date, ``decimal`` -> Decimal); an absent element is None.  Python keywords take the
    ``_fhir`` suffix, as in fhir.resources (``class_fhir``)."""

    __slots__ = ("_data", "_path", "_checks", "__dict__")

    def __init__(self, data: dict[str, Any], path: Path, checks: dict[Path, Callable[[Any], Any]]):
        self._data, self._path, self._checks = data, path, checks

    def __getattr__(self, name: str) -> Any:  # called once per element: the result is kept
        key = name[:-5] if name.endswith("_fhir") else name
        value = self._data.get(key)
        result = None if value is None else _wrap(value, (*self._path, key), self._checks)
        self.__dict__[name] = result
        return result

    def get_resource_type(self) -> Any:
        return self._data.get("resourceType")


def _wrap(value: Any, path: Path, checks: dict[Path, Callable[[Any], Any]]) -> Any:
    if isinstance(value, dict):
        return FhirView(value, path, checks)
    if isinstance(value, list):
        return [_wrap(v, path, checks) for v in value]
    return checks[path](value)


def _shape(node: Any, path: Path, leaves: list[tuple[Path, Any]]) -> Any:
    """The structure of a JSON value as a hashable key; its primitive values go to ``leaves``."""
    kind = type(node)
    if kind is dict:
        out: list[Any] = [_DICT]
        for key, value in node.items():
            out.append(key)
            out.append(_shape(value, (*path, key), leaves))
        return tuple(out)
    if kind is list:
        return (_LIST, *[_shape(value, path, leaves) for value in node])
    if isinstance(node, (dict, list)):  # a subclass: same structure, rare
        return _shape(dict(node) if isinstance(node, dict) else list(node), path, leaves)
    leaves.append((path, node))
    return kind


def _leaf_check(model: type[BaseModel], path: Path) -> Callable[[Any], Any] | None:
    """The validator fhir.resources uses for the primitive element at ``path`` (list indices
    left out), or None when the path does not lead to one."""
    if path == ("resourceType",):
        expected = getattr(model, "__resource_type__", None)

        def same_type(value: Any) -> None:
            if value != expected:
                model.model_validate({"resourceType": value})  # raises fhir.resources' own error

        return same_type
    cls: Any = model
    annotation: Any = None
    for i, key in enumerate(path):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = next((f for name, f in cls.model_fields.items() if (f.alias or name) == key), None)
        if field is None:
            return None
        annotation = _unwrap(field.annotation)
        if i < len(path) - 1:
            klass = getattr(annotation, "get_model_klass", None)
            cls = klass() if klass is not None else None
    if annotation is None or hasattr(annotation, "get_model_klass"):
        return None  # a complex element where a primitive was expected
    return TypeAdapter(annotation).validate_python


def _unwrap(annotation: Any) -> Any:
    """Optional[List[X]] -> X (Annotated primitive types are kept whole)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        elif origin in (list, typing.List):  # noqa: UP006
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation
