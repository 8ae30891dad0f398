"""Exact fhir.resources validation at a fraction of its cost, for incoming resources
(mapping/fhir_in.py); the published ChargeItems take their checks from here
(mapping/built_validation.py).

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
each with the pydantic type fhir.resources itself declares for that element.

A list of complex elements counts once per distinct item shape, not per item: fhir.resources
validates each item of a list on its own and sets no maximum length, so ``note`` with 2 or 12
items is one shape (ChargeItems of 1,000 synthetic encounters: 7 shapes instead of 155, each
of which cost a full validation of ~1.5 ms in every new worker).  Lists holding primitives or
nulls, and the ``_element`` lists that pair with them, keep every position.

The verdicts agree with full validation (``tests/test_fhir_shapes.py`` checks it on valid and
mutated resources); a ChargeItem of a known shape costs a few tens of microseconds, a full validation ~0.7 ms.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter

Path = tuple[str, ...]
Shape = tuple[Any, ...]
Check = Callable[[Any], Any]
_LIST, _DICT = "[", "{"


class _Element:
    """An element path of the model (list indices left out) met in a resource: its children by
    key, its model class when it is complex, the check fhir.resources applies when primitive."""

    __slots__ = ("path", "children", "cls", "check")

    def __init__(self, path: Path, cls: type[BaseModel] | None, check: Check | None):
        self.path, self.cls, self.check = path, cls, check
        self.children: dict[str, _Element] = {}


# What a key the model does not have leads to (and everything below it): no check, so a
# resource holding one is never learned and always gets fhir.resources' own verdict.
_UNKNOWN = _Element((), None, None)


class ShapeValidator:
    def __init__(self, model: type[BaseModel], max_shapes: int = 4096, max_values: int = 50_000,
                 max_elements: int = 20_000):
        self.model = model
        self.max_shapes, self.max_values, self.max_elements = max_shapes, max_values, max_elements
        self._shapes: set[Shape] = set()  # shapes validated in full and found valid
        self._root = _Element((), model, None)
        self._elements = 1
        # (check, type, value) -> the value as fhir.resources returns it, for primitive values
        # already found valid: code systems, units, codes and extension URLs repeat in nearly
        # every resource, and a view reads each value again.  Bounded: emptied when full.
        self._valid: dict[tuple[Check | None, type, Any], Any] = {}
        self.full = self.fast = 0  # validations done in full / by primitive values only

    def validate(self, resource: dict[str, Any]) -> None:
        """Raise (as fhir.resources would: ``pydantic.ValidationError``) unless ``resource`` is valid."""
        values: list[Any] = []
        checks: list[Check | None] = []
        shape = self._shape(resource, self._root, values, checks)
        known = shape in self._shapes
        if known and self._converted(values, checks) is not None:
            self.fast += 1
            return
        self.model.model_validate(resource)  # raises, with the element's location
        if not known:
            self.full += 1
            self._learn(shape, values, checks)

    def parse(self, resource: dict[str, Any]) -> Any:
        """The validated resource, read like a fhir.resources model: the model itself (new
        shape), or a :class:`FhirView` whose primitive values are converted by the same types
        (known shape).  An invalid resource raises fhir.resources' own error."""
        values: list[Any] = []
        checks: list[Check | None] = []
        slots: list[tuple[Any, Any]] = []
        shape, view = self._shape_view(resource, self._root, values, checks, slots)
        if shape in self._shapes:
            converted = self._converted(values, checks)
            if converted is not None:
                for (container, at), value in zip(slots, converted, strict=True):
                    container[at] = value
                self.fast += 1
                return view
            return self.model.model_validate(resource)  # a value its type refuses: raises, with the location
        model = self.model.model_validate(resource)
        self.full += 1
        self._learn(shape, values, checks)
        return model

    def _converted(self, values: list[Any], checks: list[Check | None]) -> list[Any] | None:
        """Each of ``values`` as fhir.resources converts it, when every value is valid for its
        element (a resource of a learned shape); else None."""
        valid = self._valid
        out = []
        try:
            for check, value in zip(checks, values, strict=True):
                key = (check, value.__class__, value)
                converted = valid.get(key, _MISSING)
                if converted is _MISSING:
                    converted = check(value)  # type: ignore[misc]  # a learned shape has a check for every value
                    if len(valid) >= self.max_values:
                        valid.clear()
                    valid[key] = converted
                out.append(converted)
        except (ValueError, TypeError):  # pydantic.ValidationError is a ValueError
            return None
        return out

    def _learn(self, shape: Shape, values: list[Any], checks: list[Check | None]) -> None:
        """Remember a shape validated in full when every primitive value's element is known
        (and none is null)."""
        if len(self._shapes) < self.max_shapes and None not in checks and not any(v is None for v in values):
            self._shapes.add(shape)

    # --- walking a resource -------------------------------------------------------------

    def _child(self, parent: _Element, key: str) -> _Element:
        """The element ``key`` of ``parent``, found in the model the first time it is met."""
        child = parent.children.get(key)
        if child is not None:
            return child
        if parent.cls is None or self._elements >= self.max_elements:
            return _UNKNOWN
        path = (*parent.path, key)
        if path == ("resourceType",):
            child = _Element(path, None, _resource_type_check(self.model))
        else:
            annotation = _field_annotation(parent.cls, key)
            if annotation is None:
                return _UNKNOWN
            klass = getattr(annotation, "get_model_klass", None)
            if klass is not None:
                child = _Element(path, klass(), None)
            else:
                child = _Element(path, None, TypeAdapter(annotation).validate_python)
        parent.children[key] = child
        self._elements += 1
        return child

    def _shape(self, node: dict[str, Any], element: _Element, values: list[Any], checks: list[Check | None]) -> Shape:
        """The structure of a JSON object as a hashable key; its primitive values go to
        ``values`` in document order, the check of each to ``checks``."""
        out: list[Any] = [_DICT]
        children = element.children
        sub: Any
        for key, value in node.items():
            child = children.get(key) or self._child(element, key)
            vkind = type(value)
            if vkind is dict:
                sub = self._shape(value, child, values, checks)
            elif vkind is list:
                sub = self._shape_list(key, value, child, values, checks)
            elif isinstance(value, dict):  # a subclass: same structure, rare
                sub = self._shape(dict(value), child, values, checks)
            elif isinstance(value, list):
                sub = self._shape_list(key, list(value), child, values, checks)
            else:
                values.append(value)
                checks.append(child.check)
                sub = vkind
            out += (key, sub)
        return tuple(out)

    def _shape_list(self, key: str, node: list[Any], element: _Element, values: list[Any],
                    checks: list[Check | None]) -> Shape:
        subs: list[Any] = []
        primitives = False
        for value in node:
            vkind = type(value)
            if vkind is dict or isinstance(value, dict):
                subs.append(self._shape(value if vkind is dict else dict(value), element, values, checks))
            elif vkind is list or isinstance(value, list):
                subs.append(self._shape_list(key, list(value), element, values, checks))
            else:
                primitives = True
                values.append(value)
                checks.append(element.check)
                subs.append(vkind)
        return _list_shape(key, subs, primitives)

    def _shape_view(self, node: dict[str, Any], element: _Element, values: list[Any], checks: list[Check | None],
                    slots: list[tuple[Any, Any]]) -> tuple[Shape, FhirView]:
        """:meth:`_shape` of a resource and, built alongside, its :class:`FhirView`: each
        primitive value's place in the view goes to ``slots`` (container, key or index), in the
        order of ``values``, for its converted value to be put there."""
        out: list[Any] = [_DICT]
        view = FhirView()
        attrs = view.__dict__
        children = element.children
        sub: Any
        for key, value in node.items():
            child = children.get(key) or self._child(element, key)
            vkind = type(value)
            if vkind is dict:
                sub, attrs[key] = self._shape_view(value, child, values, checks, slots)
            elif vkind is list:
                sub, attrs[key] = self._shape_view_list(key, value, child, values, checks, slots)
            elif isinstance(value, dict):  # a subclass: same structure, rare
                sub, attrs[key] = self._shape_view(dict(value), child, values, checks, slots)
            elif isinstance(value, list):
                sub, attrs[key] = self._shape_view_list(key, list(value), child, values, checks, slots)
            else:
                values.append(value)
                checks.append(child.check)
                slots.append((attrs, key))
                attrs[key] = value
                sub = vkind
            out += (key, sub)
        return tuple(out), view

    def _shape_view_list(self, key: str, node: list[Any], element: _Element, values: list[Any],
                         checks: list[Check | None], slots: list[tuple[Any, Any]]) -> tuple[Shape, list[Any]]:
        subs: list[Any] = []
        items: list[Any] = []
        primitives = False
        sub: Any
        item: Any
        for i, value in enumerate(node):
            vkind = type(value)
            if vkind is dict or isinstance(value, dict):
                sub, item = self._shape_view(value if vkind is dict else dict(value), element, values, checks, slots)
            elif vkind is list or isinstance(value, list):
                sub, item = self._shape_view_list(key, list(value), element, values, checks, slots)
            else:
                primitives = True
                values.append(value)
                checks.append(element.check)
                slots.append((items, i))
                sub, item = vkind, value
            subs.append(sub)
            items.append(item)
        return _list_shape(key, subs, primitives), items


_MISSING = object()


def _list_shape(key: str, item_shapes: list[Any], primitives: bool) -> Shape:
    """A list's shape: for a list of complex elements, each distinct item shape once, in order
    of appearance (fhir.resources validates each item on its own and sets no maximum length);
    a list holding primitives or nulls, or an ``_element`` list paired with one, keeps every
    position."""
    if primitives or key[:1] == "_" or len(item_shapes) < 2:
        return (_LIST, *item_shapes)
    return (_LIST, *dict.fromkeys(item_shapes))


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
        # Absent from this view: None, and from now on found on the class, so the next view
        # lacking it answers without the failed lookup and this call (~0.3 µs; the mapper asks
        # for ~20 absent elements per resource).  A view holding the element shadows it.
        setattr(FhirView, name, None)
        return None

    def get_resource_type(self) -> Any:
        return self.__dict__.get("resourceType")


def _resource_type_check(model: type[BaseModel]) -> Check:
    expected = getattr(model, "__resource_type__", None)

    def same_type(value: Any) -> None:
        if value != expected:
            model.model_validate({"resourceType": value})  # raises fhir.resources' own error

    return same_type


def _field_annotation(cls: type[BaseModel], key: str) -> Any:
    """The type of the element ``key`` (its JSON name) of ``cls``, unwrapped to the item type
    of a list; None when ``cls`` has no such element."""
    field = next((f for name, f in cls.model_fields.items() if (f.alias or name) == key), None)
    return None if field is None else _unwrap(field.annotation)


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
