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
        # shape -> the check of each primitive value, in document order
        self._shapes: dict[Shape, tuple[Callable[[Any], Any], ...]] = {}
        self._checks: dict[Path, Callable[[Any], Any]] = {}
        # (check, type, value) -> the value as fhir.resources returns it, for primitive values
        # already found valid: code systems, units, codes and extension URLs repeat in nearly
        # every resource, and a view reads each value again.  Bounded: emptied when full.
        self._valid: dict[tuple[Callable[[Any], Any], type, Any], Any] = {}
        self.full = self.fast = 0  # validations done in full / by primitive values only

    def validate(self, resource: dict[str, Any]) -> None:
        """Raise (as fhir.resources would: ``pydantic.ValidationError``) unless ``resource`` is valid."""
        self.parse(resource)

    def parse(self, resource: dict[str, Any]) -> Any:
        """The validated resource, read like a fhir.resources model: the model itself (new
        shape), or a :class:`FhirView` whose primitive values are converted by the same types
        (known shape).  An invalid resource raises fhir.resources' own error."""
        values: list[Any] = []
        shape = _shape(resource, values)
        checks = self._shapes.get(shape)
        if checks is not None:
            valid = self._valid
            try:
                for check, value in zip(checks, values, strict=True):
                    key = (check, value.__class__, value)
                    if key not in valid:
                        converted = check(value)
                        if len(valid) >= self.max_values:
                            valid.clear()
                        valid[key] = converted
            except (ValueError, TypeError):  # pydantic.ValidationError is a ValueError
                return self.model.model_validate(resource)  # raises, with the element's location
            self.fast += 1
            return FhirView(resource, (), self._checks, valid)
        model = self.model.model_validate(resource)
        self.full += 1
        self._learn(shape, resource)
        return model

    def _learn(self, shape: Shape, resource: dict[str, Any]) -> None:
        """Remember a validated shape when every leaf's element type is known (and no null)."""
        if len(self._shapes) >= self.max_shapes:
            return
        leaves: list[tuple[Path, Any]] = []
        _leaves(resource, (), leaves)
        checks = []
        for path, value in leaves:
            check = self._checks.get(path) or _leaf_check(self.model, path)
            if check is None or value is None:
                return
            self._checks[path] = check
            checks.append(check)
        self._shapes[shape] = tuple(checks)


_MISSING = object()


class FhirView:
    """A validated resource dict read like a fhir.resources model: ``view.dosage.route.coding``;
    primitive values come back as fhir.resources returns them (``dateTime`` -> datetime or
    date, ``decimal`` -> Decimal); an absent element is None.  Python keywords take the
    ``_fhir`` suffix, as in fhir.resources (``class_fhir``)."""

    __slots__ = ("_data", "_path", "_checks", "_converted", "__dict__")

    def __init__(self, data: dict[str, Any], path: Path, checks: dict[Path, Callable[[Any], Any]],
                 converted: dict[tuple[Callable[[Any], Any], type, Any], Any]):
        self._data, self._path, self._checks, self._converted = data, path, checks, converted

    def __getattr__(self, name: str) -> Any:  # called once per element: the result is kept
        key = name[:-5] if name[-5:] == "_fhir" else name
        value = self._data.get(key)
        if value is None:  # absent: most elements the mapping asks for
            self.__dict__[name] = None
            return None
        result = self.__dict__[name] = self._wrap(value, (*self._path, key))
        return result

    def _wrap(self, value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return FhirView(value, path, self._checks, self._converted)
        if isinstance(value, list):
            return [self._wrap(v, path) for v in value]
        check = self._checks[path]
        converted = self._converted.get((check, value.__class__, value), _MISSING)
        return check(value) if converted is _MISSING else converted

    def get_resource_type(self) -> Any:
        return self._data.get("resourceType")


def _shape(node: Any, values: list[Any]) -> Any:
    """The structure of a JSON value as a hashable key; its primitive values go to ``values``
    in document order (the order :func:`_leaves` finds their paths in)."""
    kind = type(node)
    if kind is dict:
        out: list[Any] = [_DICT]
        for key, value in node.items():
            vkind = type(value)
            if vkind is dict or vkind is list:
                out += (key, _shape(value, values))
            elif isinstance(value, (dict, list)):  # a subclass: same structure, rare
                out += (key, _shape(dict(value) if isinstance(value, dict) else list(value), values))
            else:
                values.append(value)
                out += (key, vkind)
        return tuple(out)
    if kind is list:
        return (_LIST, *[_shape(value, values) for value in node])
    if isinstance(node, (dict, list)):
        return _shape(dict(node) if isinstance(node, dict) else list(node), values)
    values.append(node)
    return kind


def _leaves(node: Any, path: Path, leaves: list[tuple[Path, Any]]) -> None:
    """Each primitive value with its element path (list indices left out), in document order."""
    if isinstance(node, dict):
        for key, value in node.items():
            _leaves(value, (*path, key), leaves)
    elif isinstance(node, list):
        for value in node:
            _leaves(value, path, leaves)
    else:
        leaves.append((path, node))


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
