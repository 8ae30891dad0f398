"""fhir.resources' verdict on resources this product builds, from what the builder knows.

:class:`mapping.fhir_shapes.ShapeValidator` learns a resource's structure by walking it.  A
builder need not walk what it built: it knows which branches it took (its *signature*: which
elements it wrote, and of which kind) and which of the values it wrote vary (the rest are
its constants).  :class:`BuiltValidator` validates the first resource of each signature with
fhir.resources in full, and every later one of that signature by checking only its variable
values, each with the very check fhir.resources applies to its element (``check(*path)``).

That is exact when a signature determines the structure and every value not registered is a
constant; ``tests/test_built_validation.py`` proves both for every combination of the
ChargeItem builder's branches, and that fhir.resources accepts each.  A value its check
refuses sends the resource to fhir.resources, whose error (with the element's location) is
raised.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from pydantic import BaseModel

from mapping.fhir_shapes import ShapeValidator

Check = Callable[[Any], Any]


class Collected:
    """What one build wrote: its signature tokens and its variable values with their checks."""

    __slots__ = ("signature", "values")

    def __init__(self) -> None:
        self.signature: list[Hashable] = []
        self.values: list[tuple[Check, Any]] = []

    def value(self, check: Check, value: Any) -> Any:
        self.values.append((check, value))
        return value


class BuiltValidator:
    def __init__(self, model: type[BaseModel], max_signatures: int = 4096, max_values: int = 50_000):
        self.model = model
        self._paths = ShapeValidator(model)  # only to find each element's check
        self._learned: set[tuple[Hashable, ...]] = set()
        self._valid: set[tuple[Check, type, Any]] = set()
        self.max_signatures, self.max_values = max_signatures, max_values
        self.full = self.fast = 0

    def check(self, *path: str) -> Check:
        """The check fhir.resources applies to the primitive element at ``path`` (JSON names,
        list positions left out), e.g. ``check("note", "text")`` (markdown)."""
        element = self._paths._root
        for key in path:
            element = self._paths._child(element, key)
        if element.check is None:
            raise KeyError(f"{self.model.__name__}.{'.'.join(path)} is not a primitive element")
        return element.check

    def validate(self, resource: dict[str, Any], collected: Collected) -> None:
        """Raise (``pydantic.ValidationError``, as fhir.resources would) unless ``resource`` is valid."""
        signature = tuple(collected.signature)
        if signature in self._learned and self._values_valid(collected.values):
            self.fast += 1
            return
        self.model.model_validate(resource)  # raises, with the element's location
        self.full += 1
        if len(self._learned) < self.max_signatures:
            self._learned.add(signature)

    def _values_valid(self, values: list[tuple[Check, Any]]) -> bool:
        valid = self._valid
        try:
            for check, value in values:
                key = (check, value.__class__, value)
                if key not in valid:
                    check(value)
                    if len(valid) >= self.max_values:
                        valid.clear()
                    valid.add(key)
        except (ValueError, TypeError):  # pydantic.ValidationError is a ValueError
            return False
        return True
