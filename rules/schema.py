"""The JSON Schema of workflow files, for validation and for editors (yaml-language-server).

``labelyard schema`` prints it; the committed copy ``rules/workflow.schema.json``
must equal :func:`build_schema` (a test checks for drift).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import durations
from .actions import ACTIONS, SECTIONS

SCHEMA_PATH = Path(__file__).with_name("workflow.schema.json")
LABEL_TYPES = ("choice", "multi_choice", "spans", "boxes", "number", "text")
LABEL_KEYS: dict[str, tuple[str, ...]] = {
    "choices": ("choice", "multi_choice", "spans", "boxes"),
    "min": ("number",),
    "max": ("number",),
    "iou": ("boxes",),
}
"""The label types each key of ``labels`` (besides ``type``) has an effect on."""


def label_key_problem(key: str, label_type: str) -> str | None:
    """Why ``labels.KEY`` is refused for labels of ``label_type`` (it would have no effect); ``None`` if it applies."""
    types = LABEL_KEYS.get(key)
    if types is None or label_type in types:
        return None
    applies = types[0] if len(types) == 1 else f"{', '.join(types[:-1])} and {types[-1]}"
    return f"`{key}` has no effect on {label_type} labels; it applies to {applies} labels"


def _label_keys_by_type() -> list[dict]:
    """``labels`` constraints: per type, the keys that have no effect on it are refused."""
    return [
        {
            "if": {"properties": {"type": {"description": f"Labels of type {label_type}.", "const": label_type}},
                   "required": ["type"]},
            "then": {"properties": {key: {"description": label_key_problem(key, label_type), "not": {}}
                                    for key in LABEL_KEYS if label_key_problem(key, label_type)}},
        }
        for label_type in LABEL_TYPES
    ]

EXPRESSION = {
    "description": "An expression: a number, a boolean, or text in the rule language "
    "(e.g. `1 - prediction.confidence`).",
    "type": ["string", "number", "boolean"],
}


def _described(description: str, **schema: object) -> dict:
    return {"description": description, **schema}


def _action_object(name: str) -> dict:
    spec = ACTIONS[name]
    target: dict = {
        "queue": _described("The queue's name, from `queues`.", type="string"),
        "return_to": _described("Who gets the task back.", enum=["annotators"]),
        "worker": _described("The worker the rule is about.", enum=["worker"]),
        "skill": _described("A skill name.", type="string"),
        "reason": _described("Why, shown to leads.", type=["string", "null"]),
        "accept": _described(
            "Options for accept.",
            type=["object", "null"],
            properties={"label": {**EXPRESSION, "description": "An expression giving the final label."}},
            additionalProperties=False,
        ),
        None: _described("No value is needed.", type=["null", "boolean"]),
    }[spec.target]
    properties = {name: {**target, "description": spec.description}}
    param_docs = {
        "overlap": {**EXPRESSION, "description": "How many submissions the stage wants in all (≥ 1)."},
        "priority": {**EXPRESSION, "description": "Higher is claimed first; ties go oldest first."},
        "reason": _described("Why, recorded on the task and shown to leads.", type="string"),
    }
    for param in spec.params:
        properties[param] = param_docs[param]
    return {
        "description": f"The `{name}` action with its parameters.",
        "type": "object",
        "properties": properties,
        "required": [name],
        "additionalProperties": False,
    }


def _rule(section: str) -> dict:
    names = sorted(n for n, spec in ACTIONS.items() if section in spec.sections)
    return {
        "description": "A rule: when its condition holds (or always, without `when`), do the action.",
        "type": "object",
        "properties": {
            "name": _described("A unique name, shown in explain, test and replay output.", type="string"),
            "description": _described("What the rule is for.", type="string"),
            "when": {**EXPRESSION, "description": "The condition; a rule without `when` always matches."},
            "do": _described(
                "The action: a bare name (`accept`) or a mapping (`{annotate: triage, overlap: 3}`).",
                anyOf=[
                    _described("An action written bare, without a value or parameters.",
                               enum=[n for n in names if not ACTIONS[n].needs_value]),
                    *[_action_object(n) for n in names],
                ],
            ),
        },
        "required": ["do"],
        "additionalProperties": False,
    }


def _plugin_entries(what: str) -> dict:
    return _described(
        f"{what}; each names a plugin and passes it the other keys.",
        type="array",
        items={
            "description": "A plugin entry; keys other than `plugin` are the plugin's own settings.",
            "type": "object",
            "properties": {"plugin": _described("The plugin's name, as `labelyard plugins` lists it.", type="string")},
            "required": ["plugin"],
            "additionalProperties": True,
        },
    )


def build_schema() -> dict:
    """The workflow JSON Schema (draft 2020-12), with a description on every property."""
    band = _described("A threshold between 0 and 1.", type="number", minimum=-1, maximum=1)
    schema: dict = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://labelyard.dev/workflow.schema.json",
        "title": "Labelyard workflow",
        "description": "A Labelyard workflow: labels, queues and the rules that route tasks.",
        "type": "object",
        "properties": {
            "workflow": _described("The workflow's name.", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
            "description": _described("What the workflow is for.", type="string"),
            "labels": _described(
                "What annotators produce.",
                type="object",
                properties={
                    "type": _described("The kind of label.", enum=list(LABEL_TYPES)),
                    "choices": _described(
                        "The allowed labels (choice, multi_choice, and span/box classes).",
                        type="array",
                        items={"description": "One label.", "type": "string"},
                        minItems=1,
                        uniqueItems=True,
                    ),
                    "min": _described("Smallest allowed value (number labels).", type="number"),
                    "max": _described("Largest allowed value (number labels).", type="number"),
                    "iou": _described("Boxes match when their IoU reaches this (boxes consensus).", type="number",
                                      minimum=0, maximum=1),
                },
                required=["type"],
                additionalProperties=False,
                allOf=_label_keys_by_type(),
            ),
            "queues": _described(
                "Named queues of work and who may take it.",
                type="object",
                minProperties=1,
                propertyNames={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]*$"},
                additionalProperties=_described(
                    "A queue.",
                    type="object",
                    properties={
                        "description": _described("What the queue is for.", type="string"),
                        "roles": _described(
                            "A worker needs one of these roles.",
                            type="array",
                            items={"description": "A role.", "type": "string"},
                            minItems=1,
                        ),
                        "skills": _described(
                            "A worker needs all of these skills.",
                            type="array",
                            items={"description": "A skill.", "type": "string"},
                        ),
                        "sla": _described(
                            "How long a task may wait here (rules read it as `queue.sla`): a number of "
                            "seconds or a duration like 30s, 15m, 2h, 7d.",
                            type=["number", "string"], minimum=0, pattern=durations.PATTERN,
                        ),
                    },
                    required=["roles"],
                    additionalProperties=False,
                ),
            ),
            **{
                section: _described(description, type="array", items=_rule(section))
                for section, description in SECTIONS.items()
            },
            "quality": _described(
                "Quality control settings.",
                type="object",
                properties={
                    "gold": _described(
                        "Gold questions.",
                        type="object",
                        properties={"rate": _described("Share of gold tasks mixed into each annotator's claims.", type="number", minimum=0, maximum=1)},
                        additionalProperties=False,
                    ),
                    "agreement": _described(
                        "Agreement metric and its bands.",
                        type="object",
                        properties={
                            "metric": _described("The headline metric.", enum=["fleiss_kappa", "krippendorff_alpha"]),
                            "excellent": band,
                            "alert": band,
                            "window": _described(
                                "How many of a queue's latest votes `queue.kappa` and `queue.alpha` read (the "
                                "tasks of those votes, with all their votes); default 2000.",
                                type="integer", minimum=2, maximum=1000000),
                        },
                        additionalProperties=False,
                    ),
                    "consensus": _described("How votes are aggregated.", enum=["majority", "weighted", "dawid_skene"]),
                },
                additionalProperties=False,
            ),
            "sources": _plugin_entries("Where tasks come from"),
            "sinks": _plugin_entries("Where final labels go"),
            "notify": _plugin_entries("Who hears about events"),
            "reviewers": _plugin_entries(
                "Automatic reviewers, asked in order about tasks in review stages (`queues:` limits them)"),
            "plugins": _described(
                "Python modules to load as plugins.",
                type="array",
                items={"description": "A dotted module name.", "type": "string"},
            ),
        },
        "required": ["workflow", "labels", "queues"],
        "additionalProperties": False,
    }
    return schema


def schema_text() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
