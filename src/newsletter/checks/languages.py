"""How many recipients read each language variant, and which language values match none.

A value no variant matches (a typo such as `ur` for `ru`) falls back to the default
announcement silently at send time; `check` names it, so the sender can decide.
"""

from __future__ import annotations

from collections import Counter

from newsletter.checks.findings import Finding
from newsletter.project import Project


def language_findings(project: Project) -> list[Finding]:
    """One info finding with the count per language; a warning listing unmatched values."""
    campaign = project.campaign
    if not campaign.variants:
        return []
    column = campaign.language_column
    default_lang = str(campaign.fields.get("lang") or "default")
    counts: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    for recipient in project.recipients.recipients():
        variant = campaign.variant_for(recipient.fields)
        counts[variant.lang or default_lang] += 1
        value = (recipient.fields.get(column) or "").strip()
        if value and variant is campaign and value.lower() != default_lang.lower():
            unknown[value] += 1
    list_name = project.recipients.path.name
    findings = [
        Finding(
            "info",
            "languages",
            "recipients per language: " + ", ".join(f"{lang} {n}" for lang, n in sorted(counts.items())),
            path=list_name,
        )
    ]
    if unknown:
        listed = ", ".join(f"{value!r} ({n})" for value, n in sorted(unknown.items()))
        variants = ", ".join(sorted(campaign.variants))
        findings.append(
            Finding(
                "warning",
                "language-unknown",
                f"column '{column}' has values no announcement.<lang>.md matches, so these rows get "
                f"the default announcement: {listed}; the variants are: {variants}",
                path=list_name,
            )
        )
    return findings
