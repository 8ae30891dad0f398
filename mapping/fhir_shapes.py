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
        values: list[Any] = []
        shape = _shape(resource, values)
        if self._converted(shape, values) is not None:
            self.fast += 1
            return
        known = shape in self._shapes
        self.model.model_validate(resource)  # raises, with the element's location
        if not known:
            self.full += 1
            self._learn(shape, resource)

    def parse(self, resource: dict[str, Any]) -> Any:
        """The validated resource, read like a fhir.resources model: the model itself (new
        shape), or a :class:`FhirView` whose primitive values are converted by the same types
        (known shape).  An invalid resource raises fhir.resources' own error."""
        values: list[Any] = []
        slots: list[tuple[Any, Any]] = []
        shape, view = _shape_view(resource, values, slots)
        converted = self._converted(shape, values)
        if converted is not None:
            for (container, at), value in zip(slots, converted, strict=True):
                container[at] = value
            self.fast += 1
            return view
        if shape in self._shapes:  # a known shape with a value its type refuses
            return self.model.model_validate(resource)  # raises, with the element's location
        model = self.model.model_validate(resource)
        self.full += 1
        self._learn(shape, resource)
        return model

    def _converted(self, shape: Shape, values: list[Any]) -> list[Any] | None:
        """Each of ``values`` as fhir.resources converts it, when ``shape`` is learned and every
        value is valid for its element; else None."""
        checks = self._shapes.get(shape)
        if checks is None:
            return None
        valid = self._valid
        out = []
        try:
            for check, value in zip(checks, values, strict=True):
                key = (check, value.__class__, value)
                converted = valid.get(key, _MISSING)
                if converted is _MISSING:
                    converted = check(value)
                    if len(valid) >= self.max_values:
                        valid.clear()
                    valid[key] = converted
                out.append(converted)
        except (ValueError, TypeError):  # pydantic.ValidationError is a ValueError
            return None
        return out

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
    """A validated resource read like a fhir.resources model: ``view.dosage.route.coding``.

    Built in one pass with the resource's shape: each element is an attribute, a complex
    one a view, a repeated one a list; primitive values are converted as fhir.resources
    converts them (``dateTime`` -> datetime or date, ``decimal`` -> Decimal).  An absent
    element reads as None; Python keywords take the ``_fhir`` suffix, as in fhir.resources
    (``class_fhir``)."""

    def __getattr__(self, name: str) -> Any:  # only called for an element the resource lacks
        if name[:2] == "__":
            raise AttributeError(name)  # the object protocol (copy, pickle, ...): not an element
        if name[-5:] == "_fhir":
            return self.__dict__.get(name[:-5])
        return None

    def get_resource_type(self) -> Any:
        return self.__dict__.get("resourceType")


def _shape_view(node: dict[str, Any], values: list[Any], slots: list[tuple[Any, Any]]) -> tuple[Shape, FhirView]:
    """:func:`_shape` of a resource and, built alongside, its :class:`FhirView`: each primitive
    value's place in the view goes to ``slots`` (container, key or index), in the order of
    ``values``, for its converted value to be put there."""
    out: list[Any] = [_DICT]
    view = FhirView()
    attrs = view.__dict__
    sub: Any
    for key, value in node.items():
        vkind = type(value)
        if vkind is dict:
            sub, attrs[key] = _shape_view(value, values, slots)
        elif vkind is list:
            sub, attrs[key] = _shape_list(value, values, slots)
        elif isinstance(value, dict):  # a subclass: same structure, rare
            sub, attrs[key] = _shape_view(dict(value), values, slots)
        elif isinstance(value, list):
            sub, attrs[key] = _shape_list(list(value), values, slots)
        else:
            values.append(value)
            slots.append((attrs, key))
            attrs[key] = value
            sub = vkind
        out += (key, sub)
    return tuple(out), view


def _shape_list(node: list[Any], values: list[Any], slots: list[tuple[Any, Any]]) -> tuple[Shape, list[Any]]:
    out: list[Any] = [_LIST]
    items: list[Any] = []
    sub: Any
    item: Any
    for i, value in enumerate(node):
        vkind = type(value)
        if vkind is dict or isinstance(value, dict):
            sub, item = _shape_view(value if vkind is dict else dict(value), values, slots)
        elif vkind is list or isinstance(value, list):
            sub, item = _shape_list(list(value), values, slots)
        else:
            values.append(value)
            slots.append((items, i))
            sub, item = vkind, value
        out.append(sub)
        items.append(item)
    return tuple(out), items


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
