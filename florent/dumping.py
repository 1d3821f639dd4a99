"""Dumping with marshmallow's schemas, planned once per schema.

`Schema.dump` works out, for every object, which fields to read, how, and what to do with
a missing value: most of the cost of a page of thirty conversations. `planned(schema)`
works that out once, from the schema's own fields, and returns a function with the same
result: it reads every attribute in one call, and formats a value with its field's
`_serialize` unless the value is already what that field would give (a str for a String,
an int for an Integer). It plans only what it can do exactly (the fields below, no hooks,
no dump defaults) and refuses anything else when the app starts; an object missing an
attribute is dumped by marshmallow itself. tests/test_dumping.py holds it equal to
`Schema.dump` on every output schema of the API.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any

from marshmallow import EXCLUDE, Schema, fields
from marshmallow.utils import missing
from sqlalchemy import Row

Dump = Callable[[Any], dict[str, Any]]
Convert = Callable[[Any], Any]

# Fields (and their subclasses) whose `_serialize` gives back a value of this type as it is.
SAME_VALUE = ((fields.String, str), (fields.Integer, int))


class OutputSchema(Schema):
    """What the API sends: every field is always present."""

    class Meta:
        unknown = EXCLUDE  # no `additionalProperties` in the document, as in the seed's

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        # marshmallow's documented hook for reading values. Its default tries obj[attr]
        # first, which on a row (indexed by position) raises and is caught on every field.
        if isinstance(obj, dict):
            return obj.get(attr, default)
        return getattr(obj, attr, default)


def planned(schema: Schema) -> Dump:
    """A function equal to `schema.dump` for one object (not `many`)."""
    if type(schema).get_attribute is not OutputSchema.get_attribute:
        raise TypeError(f"{type(schema).__name__} reads values in a way it cannot plan")
    if any(schema._hooks.get(tag) for tag in ("pre_dump", "post_dump")) or schema.many:
        raise TypeError(f"{type(schema).__name__} has hooks or many=True: use Schema.dump")
    constants: dict[str, Any] = {}
    keys, attributes, conversions = [], [], []
    for name, field in schema.dump_fields.items():
        key, attribute = field.data_key or name, field.attribute or name
        if isinstance(field, fields.Constant):
            constants[key] = field.constant
            continue
        if field.dump_default is not missing or "." in attribute:
            raise TypeError(f"{name}: dump defaults and dotted attributes are not planned")
        keys.append(key)
        attributes.append(attribute)
        convert = _converter(name, field)
        if convert is not None:
            conversions.append((key, convert))
    by_attribute, by_key = _getters(attributes)

    def dump(obj: Any) -> dict[str, Any]:
        try:
            if isinstance(obj, Row):
                # The same values as its attributes, read many times faster by key.
                values = by_key(obj._mapping)
            else:
                values = by_key(obj) if isinstance(obj, dict) else by_attribute(obj)
        except (AttributeError, KeyError):  # a value missing: marshmallow leaves its key out
            return schema.dump(obj)
        out = dict(zip(keys, values, strict=True))
        for key, convert in conversions:
            value = out[key]
            if value is not None:
                out[key] = convert(value)
        return {**out, **constants}

    return dump


def _getters(attributes: list[str]) -> tuple[Callable, Callable]:
    """Read every attribute in one call; always a tuple, whatever their number."""
    if not attributes:
        return (lambda obj: ()), (lambda obj: ())
    if len(attributes) == 1:
        read, get = attrgetter(attributes[0]), itemgetter(attributes[0])
        return (lambda obj: (read(obj),)), (lambda obj: (get(obj),))
    return attrgetter(*attributes), itemgetter(*attributes)


def _converter(name: str, field: fields.Field) -> Convert | None:
    """How a present, non-null value is formatted; None when it is sent as it is."""
    if isinstance(field, fields.Nested) and not field.many:
        return planned(field.schema)
    if isinstance(field, fields.List):
        each = _converter(name, field.inner) or (lambda value: value)
        return lambda values: [None if value is None else each(value) for value in values]
    if getattr(field, "as_string", False):
        raise TypeError(f"{name}: numbers as strings are not planned")

    def serialize(value: Any) -> Any:
        return field._serialize(value, name, None)

    for field_class, kind in SAME_VALUE:
        if isinstance(field, field_class):
            return lambda value: value if type(value) is kind else serialize(value)
    if type(field) is fields.Raw:
        return None
    # Booleans, and fields of the API's own that format a value (timestamps).
    if type(field) is fields.Boolean or getattr(field, "formats_value_only", False):
        return serialize
    raise TypeError(f"{name}: {type(field).__name__} fields are not planned")
