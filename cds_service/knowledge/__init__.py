"""Clinical knowledge as data: value sets, unit aliases, thresholds and sources.

The YAML files beside this module are what a clinical reviewer reads and signs off; this module
only loads them, applies a site profile (`site.py`: thresholds, switches, local codes) and
answers look-ups. Every code carries
its source and grade in the files. "Clinical rules §N" in the files refers to
docs/clinical-rules.md.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache, cached_property
from importlib import resources
from typing import Any

import yaml

from cds_service.config import ConfigError
from cds_service.knowledge.site import LocalCode, SiteProfile, add_local_codes
from cds_service.knowledge.threshold_names import ThresholdName as ThresholdName

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"

_FILES = ("observations", "conditions", "medications", "thresholds", "units", "sources")


@cache
def _raw(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text())


@cache
def version() -> str:
    """A short content hash of the knowledge files: recorded with every card."""
    digest = hashlib.sha256()
    for name in _FILES:
        digest.update(resources.files(__package__).joinpath(f"{name}.yaml").read_bytes())
    return digest.hexdigest()[:12]


def site_version(
    changed_thresholds: Mapping[str, Any],
    changed_settings: Mapping[str, Any],
    site_digest: str = "",
) -> str:
    """`version()`, followed by `+` and a short hash of what a site changed (thresholds and
    clinical settings that differ from the files, and the content of its site profile files),
    so that cards and their history name the knowledge that decided them. Without changes it
    is `version()` itself."""
    if not changed_thresholds and not changed_settings and not site_digest:
        return version()
    changed: dict[str, Any] = {"thresholds": changed_thresholds, "settings": changed_settings}
    if site_digest:
        changed["site"] = site_digest
    digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()
    return f"{version()}+{digest[:8]}"


@dataclass(frozen=True)
class Ingredient:
    id: str
    display: str
    role: str
    moiety: str
    rxnorm: frozenset[str]
    atc: frozenset[str]
    names: tuple[str, ...]
    label: str | None
    thiopurine: bool = False
    recent_days: int | None = None
    dose_review_advice: str = ""
    # The drug's own CBC monitoring schedule as its label gives it (cited to `label`).
    cbc_schedule: str = ""
    # The smallest orderable dose step in mg when the product's strength is unknown.
    dose_step_mg: float | None = None
    # CPIC normal starting dose in mg/kg/day (low, high): thiopurines only.
    cpic_normal_start_mg_per_kg: tuple[float, float] | None = None

    @property
    def is_tier_a(self) -> bool:
        return self.role == "tier_a"

    @property
    def is_immunosuppressant(self) -> bool:
        return self.role in ("tier_a", "tier_b")


@dataclass(frozen=True)
class Product:
    ingredient: str
    display: str
    strength_mg: float | None = None
    form: str | None = None
    scored: bool = False  # the label says the tablet is scored: half a tablet can be given


@dataclass(frozen=True)
class Combination:
    drugs: frozenset[str]
    partners: frozenset[str]
    advice: str
    source: str
    # The label's dose range for the drug with its partner (lowest, highest), if it gives one.
    dose_fraction: tuple[Fraction, Fraction] | None = None


@dataclass(frozen=True)
class Source:
    label: str
    url: str


@dataclass(frozen=True)
class Knowledge:
    """Everything the rules know, with a site profile applied."""

    thresholds: Mapping[str, float]
    settings: Mapping[str, Any]
    stale_cbc_days_by_drug: Mapping[str, Mapping[str, int]]
    # (system, code) -> analyte id: the packaged LOINC codes, then a site's local codes.
    analyte_by_code: Mapping[tuple[str, str], str]
    method_by_code: Mapping[tuple[str, str], str]  # (system, code) -> manual | automated | flow
    analyte_display: Mapping[str, str]
    orderables: Mapping[str, Mapping[str, str]]
    condition_codes: Mapping[str, frozenset[tuple[str, str]]]  # group -> {(system, code)}
    condition_prefixes: Mapping[str, tuple[str, ...]]  # group -> ICD-10-CM prefixes
    ingredients: Mapping[str, Ingredient]
    products: Mapping[str, Product]  # RxNorm SCD/SBD code -> product
    gcsf_atc_prefix: str
    combinations: tuple[Combination, ...]
    also_consider: tuple[str, ...]
    sources: Mapping[str, Source]
    units: Mapping[str, Any]
    local_forms: Mapping[str, Any] = field(default_factory=dict)  # never-counting routes, forms
    version: str = field(default_factory=version)
    # Analyte kind (count, percent, temperature, weight, phenotype) -> its (system, code)s.
    codes_by_kind: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # A site's local product codes (site profile codes.yaml), by (system, code).
    local_products: Mapping[tuple[str, str], Product] = field(default_factory=dict)

    def threshold(self, name: ThresholdName) -> float:
        return self.thresholds[name]

    def product(self, system: str, code: str) -> Product | None:
        """The product a medication coding names: the RxNorm SCD/SBD table, else a site's
        local product codes."""
        if system == RXNORM and code in self.products:
            return self.products[code]
        return self.local_products.get((system, code))

    def code_lists(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """The (system, code) lists a prefetch template names as `{{knowledge.<name>}}`, so
        that the service asks for exactly the codes it reads: `<kind>_codes` for each kind of
        analyte (`count_codes`, `percent_codes`, ...) and `duffy_null_codes`, the site's Duffy
        phenotype codes (clinical rules §2.4)."""
        lists = {f"{kind}_codes": codes for kind, codes in self.codes_by_kind.items()}
        lists["duffy_null_codes"] = tuple(
            (str(entry["system"]), str(entry["code"]))
            for entry in self.settings["duffy_null_codes"]
        )
        return lists

    @cached_property
    def duffy_entries(self) -> dict[tuple[str, str], Mapping[str, Any]]:
        """The site's Duffy phenotype code entries by (system, code), in settings order (the
        first of a repeated code kept): every Observation of a call is looked up here."""
        entries: dict[tuple[str, str], Mapping[str, Any]] = {}
        for entry in self.settings["duffy_null_codes"]:
            entries.setdefault((str(entry["system"]), str(entry["code"])), entry)
        return entries

    def source(self, key: str) -> Source:
        return self.sources[key]


def _condition_sets(
    raw: Mapping[str, Any],
) -> tuple[dict[str, frozenset[tuple[str, str]]], dict[str, tuple[str, ...]]]:
    systems = raw["systems"]
    codes: dict[str, frozenset[tuple[str, str]]] = {}
    prefixes: dict[str, tuple[str, ...]] = {}
    for group, entries in raw.items():
        if group in ("systems", "code_sources"):  # metadata, not a value set
            continue
        codes[group] = frozenset(
            (systems[system_key], str(entry["code"]))
            for system_key in ("snomed", "icd10cm", "icd9cm")
            for entry in entries.get(system_key, [])
        )
        prefixes[group] = tuple(str(e["code"]) for e in entries.get("icd10cm_prefixes", []))
    return codes, prefixes


def _ingredients(raw: Mapping[str, Any]) -> dict[str, Ingredient]:
    return {
        key: Ingredient(
            id=key,
            display=entry["display"],
            role=entry["role"],
            moiety=entry.get("moiety", key),
            rxnorm=frozenset(str(c["code"]) for c in entry.get("rxnorm", [])),
            atc=frozenset(entry.get("atc", [])),
            names=tuple(entry.get("names", [])),
            label=entry.get("label"),
            thiopurine=bool(entry.get("thiopurine", False)),
            recent_days=entry.get("recent_days"),
            dose_review_advice=" ".join(str(entry.get("dose_review_advice", "")).split()),
            cbc_schedule=" ".join(str(entry.get("cbc_schedule", "")).split()),
            dose_step_mg=entry.get("dose_step_mg"),
            cpic_normal_start_mg_per_kg=(
                (
                    float(entry["cpic_normal_start_mg_per_kg"][0]),
                    float(entry["cpic_normal_start_mg_per_kg"][1]),
                )
                if entry.get("cpic_normal_start_mg_per_kg")
                else None
            ),
        )
        for key, entry in raw["ingredients"].items()
    }


def _apply_overrides(
    defaults: Mapping[str, float], overrides: Mapping[str, Any], origin: str
) -> dict[str, float]:
    thresholds = dict(defaults)
    for name, value in overrides.items():
        if name not in thresholds:
            closest = difflib.get_close_matches(str(name), list(thresholds), n=1)
            hint = f"; did you mean {closest[0]}?" if closest else ""
            raise ConfigError(f"{origin}: unknown threshold {name!r}{hint}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{origin}: {name} must be a non-negative number")
        thresholds[name] = float(value)
    if thresholds["dose_review_wbc"] > thresholds["leukopenia_wbc"]:
        raise ConfigError(f"{origin}: dose_review_wbc must not exceed leukopenia_wbc")
    return thresholds


def _apply_settings(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any], origin: str
) -> dict[str, Any]:
    settings = dict(defaults)
    for name, value in overrides.items():
        if name not in settings:
            raise ConfigError(f"{origin}: unknown setting {name!r} ({', '.join(settings)})")
        if not isinstance(value, type(settings[name])):
            raise ConfigError(f"{origin}: {name} must be {type(settings[name]).__name__}")
        settings[name] = value
    return settings


def _observation_codes(
    observations: Mapping[str, Any], local: tuple[LocalCode, ...]
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """(system, code) -> analyte and -> method: the packaged codes, then the site's."""
    analytes: dict[tuple[str, str], str] = {}
    methods: dict[tuple[str, str], str] = {}
    for analyte, entry in observations["analytes"].items():
        for code in entry["codes"]:
            analytes[(observations["system"], code["code"])] = analyte
            if "method" in code:
                methods[(observations["system"], code["code"])] = code["method"]
    known = set(analytes)
    add_local_codes(analytes, local, observations["analytes"], "analyte (observations.yaml)")
    for code in local:
        if code.key not in known:
            known.add(code.key)
            if code.method is not None:
                methods[code.key] = code.method
        elif code.method is not None and code.method != methods.get(code.key):
            raise ConfigError(
                f"{code.where}.method: {code.system}|{code.code} is already read with method "
                f"{methods.get(code.key, 'none')!r}; a local entry cannot change it"
            )
    return analytes, methods


def _local_products(
    medications: Mapping[str, Any], local: tuple[LocalCode, ...]
) -> dict[tuple[str, str], Product]:
    """A site's product codes, refused where a packaged RxNorm or ATC code means another
    ingredient."""
    packaged: dict[tuple[str, str], str] = {}
    for key, entry in medications["ingredients"].items():
        packaged.update({(RXNORM, str(c["code"])): key for c in entry.get("rxnorm", [])})
        packaged.update({(ATC, str(code)): key for code in entry.get("atc", [])})
    packaged.update({(RXNORM, str(c)): p["ingredient"] for c, p in medications["products"].items()})
    add_local_codes(packaged, local, medications["ingredients"], "ingredient (medications.yaml)")
    return {
        code.key: Product(
            ingredient=code.meaning,
            display=code.display,
            strength_mg=code.strength_mg,
            form=code.form,
            scored=code.scored,
        )
        for code in local
    }


def _local_conditions(
    codes: dict[str, frozenset[tuple[str, str]]],
    prefixes: Mapping[str, tuple[str, ...]],
    local: tuple[LocalCode, ...],
) -> dict[str, frozenset[tuple[str, str]]]:
    """The condition value sets with a site's codes added; an ICD-10-CM code another group
    holds by prefix is refused like a code it holds."""
    table = {code: group for group, members in codes.items() for code in members}
    add_local_codes(table, local, codes, "condition group (conditions.yaml)")
    for code in local:
        for group, starts in prefixes.items():
            if code.system == ICD10CM and group != code.meaning and code.code.startswith(starts):
                raise ConfigError(
                    f"{code.where}: {code.system}|{code.code} already means {group!r} "
                    f"(ICD-10-CM {', '.join(starts)}); a local code must not give a code "
                    f"another meaning ({code.meaning!r})"
                )
    return {
        group: members | {c.key for c in local if c.meaning == group}
        for group, members in codes.items()
    }


def _dose_fraction(raw: Any) -> tuple[Fraction, Fraction] | None:
    """A label's dose range as exact fractions ("1/4", "1/3"), lowest first, within (0, 1]."""
    if raw is None:
        return None
    low, high = (Fraction(str(value)) for value in raw)
    if not 0 < low <= high <= 1:
        raise ConfigError(f"medications.yaml: dose_fraction {raw!r} must be 0 < low <= high <= 1")
    return low, high


def load_knowledge(
    threshold_overrides: Mapping[str, Any] | None = None,
    setting_overrides: Mapping[str, Any] | None = None,
    *,
    site: SiteProfile | None = None,
) -> Knowledge:
    """The packaged knowledge with a site profile applied (`site.read_site_profile`);
    `threshold_overrides` and `setting_overrides` change thresholds and switches from code
    (tests, tools), over the site's."""
    site = site or SiteProfile()
    observations = _raw("observations")
    medications = _raw("medications")
    thresholds_raw = _raw("thresholds")
    analyte_by_code, method_by_code = _observation_codes(observations, site.codes.observations)
    codes_by_kind: dict[str, list[tuple[str, str]]] = {}
    for code, analyte in analyte_by_code.items():
        codes_by_kind.setdefault(observations["analytes"][analyte]["kind"], []).append(code)
    condition_codes, condition_prefixes = _condition_sets(_raw("conditions"))
    default_thresholds = {k: float(v["value"]) for k, v in thresholds_raw["thresholds"].items()}
    thresholds = _apply_overrides(
        _apply_overrides(default_thresholds, site.thresholds, site.thresholds_origin),
        threshold_overrides or {},
        "thresholds",
    )
    settings = _apply_settings(
        _apply_settings(thresholds_raw["settings"], site.clinical, site.clinical_origin),
        setting_overrides or {},
        "clinical settings",
    )
    return Knowledge(
        thresholds=thresholds,
        settings=settings,
        stale_cbc_days_by_drug=thresholds_raw.get("stale_cbc_days_by_drug") or {},
        analyte_by_code=analyte_by_code,
        method_by_code=method_by_code,
        analyte_display={k: v["display"] for k, v in observations["analytes"].items()},
        orderables=observations["orderables"],
        condition_codes=_local_conditions(
            condition_codes, condition_prefixes, site.codes.conditions
        ),
        condition_prefixes=condition_prefixes,
        ingredients=_ingredients(medications),
        products={
            str(code): Product(
                ingredient=p["ingredient"],
                display=p["display"],
                strength_mg=p.get("strength_mg"),
                form=p.get("form"),
                scored=bool(p.get("scored", False)),
            )
            for code, p in medications["products"].items()
        },
        gcsf_atc_prefix=medications["gcsf_atc_prefix"],
        combinations=tuple(
            Combination(
                drugs=frozenset(c["drugs"]),
                partners=frozenset(c["with"]),
                advice=" ".join(c["advice"].split()),
                source=c["source"],
                dose_fraction=_dose_fraction(c.get("dose_fraction")),
            )
            for c in medications["combinations"]
        ),
        also_consider=tuple(medications["also_consider"]),
        sources={k: Source(label=v["label"], url=v["url"]) for k, v in _raw("sources").items()},
        units=_raw("units"),
        local_forms={
            "route_system": medications["local_forms"]["route_system"],
            "route_codes": frozenset(
                str(r["code"]) for r in medications["local_forms"]["route_codes"]
            ),
            "words": tuple(medications["local_forms"]["words"]),
        },
        version=site_version(
            {k: v for k, v in thresholds.items() if v != default_thresholds[k]},
            {k: v for k, v in settings.items() if v != thresholds_raw["settings"][k]},
            site.digest,
        ),
        codes_by_kind={kind: tuple(codes) for kind, codes in codes_by_kind.items()},
        local_products=_local_products(medications, site.codes.medications),
    )
