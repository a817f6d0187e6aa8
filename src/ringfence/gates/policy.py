"""The gate policy: a declarative, versioned file mapping provenance and gate figures to circles.

The lab edits its own copy (RINGFENCE_GATES_POLICY, or RINGFENCE_HOME/gates-policy.yaml);
without one the shipped `default_policy.yaml` applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from ringfence.access.models import CIRCLES
from ringfence.errors import InvalidInput
from ringfence.gates.provenance import parse
from ringfence.settings import Settings

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")

_CIRCLE = {"enum": list(CIRCLES)}
_RATE = {"type": "number", "minimum": 0, "maximum": 1}


def _gate(**figures: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["fail", *figures],
        "properties": {"fail": _CIRCLE, **figures},
    }


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["policy", "version", "provenance", "gates"],
    "properties": {
        "policy": {"type": "string", "minLength": 1},
        "version": {"type": "integer", "minimum": 1},
        "provenance": {
            "type": "object",
            "additionalProperties": False,
            "required": ["missing", "user_data", "personal_data_unscrubbed", "non_commercial"],
            "properties": {
                "missing": _CIRCLE,
                "user_data": _CIRCLE,
                "personal_data_unscrubbed": _CIRCLE,
                "non_commercial": _CIRCLE,
                "non_commercial_licences": {"type": "array", "items": {"type": "string"}},
            },
        },
        "gates": {
            "type": "object",
            "additionalProperties": False,
            "required": ["not_run", "file_safety", "memorisation", "pii", "safety"],
            "properties": {
                "not_run": _CIRCLE,
                "file_safety": _gate(),
                "memorisation": _gate(
                    max_canary_exposure_bits={"type": "number", "minimum": 0},
                    max_extractable_fraction=_RATE,
                    max_membership_auc=_RATE,
                ),
                "pii": _gate(
                    generations={"type": "integer", "minimum": 1, "maximum": 10000},
                    max_new_tokens={"type": "integer", "minimum": 1, "maximum": 512},
                    max_rate=_RATE,
                    max_leaked={"type": "integer", "minimum": 0},
                ),
                "safety": _gate(
                    max_new_tokens={"type": "integer", "minimum": 1, "maximum": 512},
                    max_rate=_RATE,
                ),
            },
        },
    },
}


@dataclass(frozen=True)
class Policy:
    """A validated policy document."""

    document: dict[str, Any]

    @property
    def name(self) -> str:
        """`NAME@VERSION`, recorded with every run judged by it."""
        return f"{self.document['policy']}@{self.document['version']}"

    def gate(self, name: str) -> dict[str, Any]:
        """The thresholds of one gate."""
        value: dict[str, Any] = self.document["gates"][name]
        return value

    @property
    def not_run(self) -> str:
        """The cap while a gate has not run (or could not)."""
        return str(self.document["gates"]["not_run"])


def validate(document: Any, *, what: str) -> Policy:
    """A Policy if `document` matches the schema; InvalidInput naming the first bad field."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise InvalidInput(f"{what}: {where}: {first.message}")
    return Policy(document)


def load(path: Path) -> Policy:
    """Read and validate a policy file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"gate policy: cannot read {path}: {exc.strerror}") from exc
    what = f"gate policy {Path(path).name}"
    return validate(parse(raw, what=what), what=what)


def policy_path(settings: Settings) -> Path:
    """The policy file in force: the setting, the data dir's own, or the shipped default."""
    if settings.gates_policy is not None:
        return settings.gates_policy
    own = settings.home / "gates-policy.yaml"
    return own if own.exists() else DEFAULT_POLICY


def current(settings: Settings | None = None) -> Policy:
    """The policy in force for these settings (default: from the environment)."""
    return load(policy_path(settings or Settings()))


def narrowest(circles: list[str]) -> str:
    """The narrowest of some circles (public when there are none)."""
    return min(circles, key=CIRCLES.index, default="public")


@dataclass(frozen=True)
class Cap:
    """One thing that limits a release: the widest circle it allows and why."""

    source: str
    circle: str
    reason: str


def provenance_caps(policy: Policy, document: dict[str, Any] | None) -> list[Cap]:
    """What a provenance manifest (or its absence) caps the release at, by the policy."""
    rules = policy.document["provenance"]
    if document is None:
        return [Cap("provenance", rules["missing"], "no provenance manifest is recorded")]
    non_commercial = {s.lower() for s in rules.get("non_commercial_licences", [])}
    caps: list[Cap] = []
    for dataset in document["datasets"]:
        name = dataset["name"]
        if dataset["contains_user_data"]:
            caps.append(Cap("provenance", rules["user_data"], f"dataset {name} holds user data"))
        if dataset["contains_personal_data"] and not dataset["scrubbed"]:
            caps.append(
                Cap(
                    "provenance",
                    rules["personal_data_unscrubbed"],
                    f"dataset {name} holds personal data that was not scrubbed",
                )
            )
        if dataset.get("commercial_use") is False or dataset["licence"].lower() in non_commercial:
            caps.append(
                Cap(
                    "provenance",
                    rules["non_commercial"],
                    f"dataset {name} is licensed {dataset['licence']} (non-commercial)",
                )
            )
    for base in document["base_models"]:
        if base["licence"].lower() in non_commercial:
            caps.append(
                Cap(
                    "provenance",
                    rules["non_commercial"],
                    f"base model {base['name']} is licensed {base['licence']} (non-commercial)",
                )
            )
    return caps
