"""The release report: the sections of a model card (Mitchell et al. 2019) with the gates'
results, their plots, the provenance and the widest allowed circle; JSON, HTML and the
README.md model card with the Hub's metadata block.

The report names no private sample and no canary secret: it says how many were probed and
how exposed each canary is, by its prefix.
"""

from __future__ import annotations

import io
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from ringfence.catalogue.models import Release
from ringfence.gates.outcome import Outcome
from ringfence.gates.policy import Policy

SECTIONS = (
    "model_details",
    "intended_use",
    "factors",
    "metrics",
    "evaluation_data",
    "training_data",
    "quantitative_analyses",
    "ethical_considerations",
    "caveats",
)

_env = Environment(
    loader=PackageLoader("ringfence.gates", "templates"), autoescape=select_autoescape()
)


def _public_provenance(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifest without what it must keep private (samples, secrets, the split's texts)."""
    if document is None:
        return None
    membership = document.get("membership")
    return {
        "datasets": document["datasets"],
        "base_models": document["base_models"],
        "private_samples": len(document.get("private_samples", [])),
        "canaries": len(document.get("canaries", [])),
        "membership_split": (
            {
                "split": membership["split"],
                "members": len(membership["members"]),
                "non_members": len(membership["non_members"]),
            }
            if membership
            else None
        ),
    }


def build(
    release: Release,
    provenance: dict[str, Any] | None,
    policy: Policy,
    outcomes: list[Outcome],
    widest: str,
) -> dict[str, Any]:
    """The report as JSON-ready data."""
    public = _public_provenance(provenance)
    gates = [{**o.public(), "cap": o.cap, "evidence": o.evidence} for o in outcomes]
    datasets = public["datasets"] if public else []
    return {
        "release": release.ref,
        "widest_circle": widest,
        "policy": policy.name,
        "gates": gates,
        "provenance": public,
        "model_details": {
            "name": release.model.name,
            "version": release.version,
            "organisation": release.model.organisation.slug,
            "parameters": release.parameter_count,
            "licence": release.licence.ref if release.licence else None,
            "base_models": [b["name"] for b in (public or {}).get("base_models", [])],
        },
        "intended_use": (
            f"Release to the {widest} circle at most, as the gates allow; within it, the "
            "release's licence governs use."
        ),
        "factors": "Prompt sets grouped by category (neutral, privacy-eliciting, insult, "
        "group hate, profanity); canaries and private samples declared in the provenance.",
        "metrics": {
            "memorisation": "canary exposure in bits (Secret Sharer), exact suffix extraction "
            "from 32-token prefixes, membership-inference ROC AUC (loss, zlib, Min-K%, Min-K%++)",
            "pii": "share of sampled generations with a scrubadub or detect-secrets finding",
            "safety": "share of continuations HateSonar labels hateful or offensive, Wilson 95% CI",
        },
        "evaluation_data": "ringfence's own prompt sets; the provenance's declared canaries, "
        "private samples and random member/non-member split",
        "training_data": datasets,
        "quantitative_analyses": {o.name: o.figures for o in outcomes},
        "ethical_considerations": [o.reason for o in outcomes if not o.passed]
        or ["no gate found a reason to hold the release"],
        "caveats": [
            "Detectors are regular expressions and a small classifier: they miss what they "
            "were not built for and flag invented details as real ones.",
            "Membership AUCs mean something only on a random split of one corpus.",
            "Probes are samples: rates come with intervals and vary between runs.",
        ],
    }


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Inline SVG plots of the gates' figures (canary exposure, ROC, safety rates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gates = {g["name"]: g for g in report["gates"]}
    out: dict[str, str] = {}
    canaries = gates.get("memorisation", {}).get("evidence", {}).get("canaries")
    if canaries:
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.bar(range(len(canaries)), [c["exposure"] for c in canaries], color="#b5472f")
        ax.plot(
            [-0.5, len(canaries) - 0.5],
            [c["space_bits"] for c in canaries][:1] * 2,
            "k--",
            label="log2 |R| (most possible)",
        )
        ax.set_xlabel("canary")
        ax.set_ylabel("exposure (bits)")
        ax.legend(loc="lower right", fontsize=7)
        out["exposure"] = _svg(fig)
    roc = gates.get("memorisation", {}).get("evidence", {}).get("roc")
    if roc:
        fig, ax = plt.subplots(figsize=(3.4, 3.2))
        aucs = gates["memorisation"]["figures"].get("membership_auc", {})
        for attack, curve in roc.items():
            ax.plot(curve["fpr"], curve["tpr"], label=f"{attack} (AUC {aucs.get(attack, 0):.2f})")
        ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7)
        out["roc"] = _svg(fig)
    rates = gates.get("safety", {}).get("figures", {}).get("rates")
    if rates:
        fig, ax = plt.subplots(figsize=(4.5, 2.4))
        names = list(rates)
        values = [rates[n]["rate"] for n in names]
        errors = [
            [v - rates[n]["ci95"][0] for n, v in zip(names, values, strict=True)],
            [rates[n]["ci95"][1] - v for n, v in zip(names, values, strict=True)],
        ]
        ax.bar(names, values, yerr=errors, capsize=4, color="#4a6fa5")
        ax.set_ylim(0, 1)
        ax.set_ylabel("hateful or offensive")
        out["safety"] = _svg(fig)
    return out


def render_html(report: dict[str, Any]) -> str:
    """The report as a self-contained HTML page (inline SVG plots, no external assets)."""
    return _env.get_template("report.html").render(
        report=report, plots=plots(report), sections=SECTIONS
    )


#: the licence identifiers the Hub's model cards know; any other licence is `other`, named
#: by `license_name`, as the Hub asks for custom licences
_HUB_LICENCE_IDS = """
apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m
bigscience-bloom-rail-1.0 bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause
bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0
cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0
etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc
h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl
openmdw-1.0 osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license
fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma
unknown other
"""
HUB_LICENCES = frozenset(_HUB_LICENCE_IDS.split())


def _licence_keys(licence: str | None) -> dict[str, str]:
    """license (and license_name for a licence the Hub does not know) for the card."""
    slug = (licence or "other").lower()
    if slug in HUB_LICENCES:
        return {"license": slug}
    return {"license": "other", "license_name": slug}


def card_metadata(report: dict[str, Any], licence: str | None) -> dict[str, Any]:
    """The Hub's metadata block for a release: licence, base models, datasets, gate figures.

    Read from the report's public parts only (dataset and base-model names, the gates'
    numeric figures): never a private sample, a canary or another field of the provenance.
    """
    results = []
    for gate in report["gates"]:
        metrics = [
            {"type": key, "value": value}
            for key, value in gate["figures"].items()
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and not key.endswith("seconds")  # timings: no figure of the model
        ]
        if metrics:
            results.append(
                {
                    "task": {"type": "text-generation"},
                    # One config per gate: Hub clients group results by task and dataset
                    # type and config, never by name.
                    "dataset": {
                        "name": f"ringfence gate {gate['name']}",
                        "type": "ringfence-gates",
                        "config": gate["name"],
                    },
                    "metrics": metrics,
                }
            )
    provenance = report.get("provenance") or {}
    meta: dict[str, Any] = {
        **_licence_keys(licence),
        "base_model": report["model_details"]["base_models"] or None,
        "datasets": [d["name"] for d in provenance.get("datasets", [])] or None,
        "model-index": [{"name": report["release"], "results": results}],
    }
    return {k: v for k, v in meta.items() if v is not None}


def split_front_matter(text: str) -> tuple[dict[str, Any] | None, str]:
    """A README's YAML front matter and the body after it.

    (None, text) when the README opens with no `---` block, or with one that is not a YAML
    mapping: such a block stays in the body, untouched.
    """
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            try:
                meta = yaml.safe_load("".join(lines[1:end]))
            except yaml.YAMLError:
                return None, text
            if meta is None:
                meta = {}
            if not isinstance(meta, dict):
                return None, text
            return meta, "".join(lines[end + 1 :])
    return None, text


def _block(meta: dict[str, Any]) -> str:
    dumped = str(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return "---\n" + dumped + "---\n"


def model_card(report: dict[str, Any], licence: str | None, published: str | None = None) -> str:
    """README.md for Hub clients: the Hub's metadata block with the gate figures, then a card.

    With the publisher's own README.md (`published`), its body follows the block instead of
    the generated card, and its own front matter is merged under ours: the keys the gates set
    (license and license_name, base_model, datasets, model-index) are ours whatever it says,
    its other keys (tags, language, pipeline_tag, ...) stay as it wrote them.
    """
    meta = card_metadata(report, licence)
    if published is not None:
        theirs, body = split_front_matter(published)
        ours = {*meta, "license_name", "license_link"}  # a licence is named by ours alone
        merged = {**meta, **{k: v for k, v in (theirs or {}).items() if k not in ours}}
        return _block(merged) + "\n" + body.lstrip("\r\n")
    gates = report["gates"]
    lines = [
        f"# {report['release']}",
        "",
        f"Widest allowed circle: **{report['widest_circle']}** (policy {report['policy']}).",
        "",
        "| gate | passed | why |",
        "|---|---|---|",
    ]
    lines += [f"| {g['name']} | {'yes' if g['passed'] else 'no'} | {g['reason']} |" for g in gates]
    return _block(meta) + "\n" + "\n".join(lines) + "\n"
