"""The workflow schema as SchemaStore asks: a description on every property, closed objects."""

from __future__ import annotations

from rules.schema import build_schema

# Plugin entries carry the plugin's own settings, which the workflow schema cannot know.
OPEN_BY_DESIGN = {"sources", "sinks", "notify", "reviewers"}


def objects_with_properties(node, path=()):
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from objects_with_properties(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from objects_with_properties(value, path + (i,))


def test_every_property_has_a_description():
    missing = [
        "/".join(map(str, path + (name,)))
        for path, obj in objects_with_properties(build_schema())
        for name, prop in obj["properties"].items()
        if not prop.get("description")
    ]
    assert missing == []


def test_objects_are_closed_except_plugin_settings():
    # `if`/`then` under `allOf` narrow an object defined (closed) above them: they define none
    objects = [(path, obj) for path, obj in objects_with_properties(build_schema()) if "allOf" not in path]
    assert len(objects) > 20
    open_objects = [
        path for path, obj in objects if obj.get("additionalProperties") is not False
    ]
    assert {path[1] for path in open_objects} == OPEN_BY_DESIGN
    assert all(path[-1] == "items" for path in open_objects)
