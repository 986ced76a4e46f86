"""Matching FHIR codes and texts against the knowledge base's value sets.

Functions here read raw FHIR JSON fragments (CodeableConcept dicts) because they run before a
resource is worth parsing: the record builder uses them to pick the few resources the rules
need out of everything the EHR sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from cds_service.knowledge import ATC, ICD10CM, LOINC, RXNORM, Ingredient, Knowledge, Product

CodeableConcept = Mapping[str, Any]


def codings(concept: CodeableConcept | None) -> list[Mapping[str, Any]]:
    if not isinstance(concept, dict):
        return []
    coding = concept.get("coding")
    return [c for c in coding if isinstance(c, dict)] if isinstance(coding, list) else []


def concept_text(concept: CodeableConcept | None) -> str:
    """A human label: the text, else the first display, else the first code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in codings(concept):
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def has_code(concept: CodeableConcept | None, system: str, codes: Iterable[str]) -> bool:
    wanted = set(codes)
    # A code that is not a string (invalid FHIR, read before validation) matches nothing.
    return any(
        c.get("system") == system and isinstance(c.get("code"), str) and c["code"] in wanted
        for c in codings(concept)
    )


def analyte_of(
    concept: CodeableConcept | None, knowledge: Knowledge
) -> tuple[str, tuple[str, str]] | None:
    """(analyte id, (system, code)) of an Observation code, or None if the rules do not use
    it. LOINC codings are read first, then a site's local codes (site profile codes.yaml)."""
    pairs = [(str(c.get("system")), str(c.get("code"))) for c in codings(concept) if c.get("code")]
    for pair in sorted(pairs, key=lambda pair: pair[0] != LOINC):
        analyte = knowledge.analyte_by_code.get(pair)
        if analyte:
            return analyte, pair
    return None


_CONDITION_GROUPS = (
    "drug_induced_sle",
    "sle",
    "cutaneous_lupus",
    "fever",
    "lupus_unspecified",
    "transplant",
    "rheumatic",
)


def condition_group(concept: CodeableConcept | None, knowledge: Knowledge) -> str | None:
    """Which condition value set (sle, drug_induced_sle, lupus_unspecified, cutaneous_lupus,
    fever, transplant, rheumatic) a Condition code belongs to; more specific groups are tried
    first."""
    pairs = {(str(c.get("system")), str(c.get("code"))) for c in codings(concept)}
    icd10 = [code for system, code in pairs if system == ICD10CM]
    for group in _CONDITION_GROUPS:
        if pairs & knowledge.condition_codes[group]:
            return group
        prefixes = knowledge.condition_prefixes[group]
        if any(code.startswith(prefix) for code in icd10 for prefix in prefixes):
            return group
    return None


@cache
def _name_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words, case-insensitive: "prednisolone" must not match "methylprednisolone".
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w])", re.IGNORECASE)


def local_form_word(text: str, words: tuple[str, ...]) -> str | None:
    """The first local-form word (whole word, any case) in a route, dose form or product
    text, e.g. "ophthalmic" in "cycloSPORINE 0.5 MG/ML Ophthalmic Emulsion"; "cutaneous"
    never matches inside "Subcutaneous"."""
    match = _name_pattern(words).search(text) if text and words else None
    return match.group(0) if match else None


def ingredients_in_text(text: str, knowledge: Knowledge) -> list[Ingredient]:
    return [
        ingredient
        for ingredient in knowledge.ingredients.values()
        if ingredient.names and _name_pattern(ingredient.names).search(text)
    ]


def match_medication(
    concept: CodeableConcept | None, knowledge: Knowledge
) -> tuple[list[Ingredient], str]:
    """Ingredients named by a medication CodeableConcept, and how they were matched.

    Order (clinical rules §4): RxNorm ingredient, RxNorm SCD/SBD table, a site's local product
    codes, ATC, then text.
    """
    rx = [str(c.get("code")) for c in codings(concept) if c.get("system") == RXNORM]
    by_ingredient = [i for i in knowledge.ingredients.values() if i.rxnorm & set(rx)]
    if by_ingredient:
        return by_ingredient, "RxNorm ingredient"
    products = [knowledge.products[code] for code in rx if code in knowledge.products]
    if products:
        return [knowledge.ingredients[p.ingredient] for p in products], "RxNorm product"
    local = [p for c in codings(concept) if (p := _local_product(c, knowledge))]
    if local:
        return [knowledge.ingredients[p.ingredient] for p in local], "local product code"
    atc = {str(c.get("code")) for c in codings(concept) if c.get("system") == ATC}
    by_atc = [i for i in knowledge.ingredients.values() if i.atc & atc]
    if by_atc:
        return by_atc, "ATC"
    if any(code.startswith(knowledge.gcsf_atc_prefix) for code in atc):
        return [knowledge.ingredients["filgrastim"]], "ATC (colony-stimulating factor class)"
    texts = [concept_text(concept)] + [str(c.get("display") or "") for c in codings(concept)]
    by_text: list[Ingredient] = []
    for text in texts:
        for ingredient in ingredients_in_text(text, knowledge):
            if ingredient not in by_text:
                by_text.append(ingredient)
    return by_text, "name"


def _local_product(coding: Mapping[str, Any], knowledge: Knowledge) -> Product | None:
    return knowledge.local_products.get((str(coding.get("system")), str(coding.get("code"))))


# An RxNorm clinical or branded drug name with one strength in mg of a solid oral form:
# "azathioprine 50 MG Oral Tablet", "mycophenolic acid 360 MG Delayed Release Oral Tablet",
# "24 HR tacrolimus 1 MG Extended Release Oral Capsule [Envarsus]".
_SOLID_DOSE_NAME = re.compile(
    r"^(?:\d+ HR )?[A-Za-z][A-Za-z ,-]*? (?P<mg>\d+(?:\.\d+)?) MG "
    r"(?:[A-Za-z]+ )*?(?P<form>Tablet|Capsule)s?\b(?: \[[^\]]+\])?$"
)


def product_of(concept: CodeableConcept | None, knowledge: Knowledge) -> Product | None:
    """The product of a medication code: the SCD/SBD table entry, else the strength read from
    the name of an RxNorm-coded clinical drug (one unit of a countable dose such as `{pill}` is
    one tablet of the coded product's strength, clinical rules §2.5 and §3 DATA_QUALITY).

    Choice where the spec is silent: only an RxNorm coding's own display is read, and only in
    RxNorm's normalised form with a single "<n> MG" and a tablet or capsule form; combination
    products ("/"), liquids ("MG/ML") and free text are never read, so the strength stays
    unknown and mg/kg is "not computed"."""
    for coding in codings(concept):
        product = knowledge.product(str(coding.get("system")), str(coding.get("code")))
        if product is not None:
            return product
    for coding in codings(concept):
        display = str(coding.get("display") or "").strip()
        match = _SOLID_DOSE_NAME.match(display) if coding.get("system") == RXNORM else None
        if match and "/" not in display:
            named = ingredients_in_text(display, knowledge)
            return Product(
                ingredient=named[0].id if len(named) == 1 else "",
                display=display,
                strength_mg=float(match.group("mg")),
                form=match.group("form").lower(),
            )
    return None
