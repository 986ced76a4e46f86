"""Clinical judgements shared by several rules: the current neutrophil state, fever, the
dose-review threshold, baselines and trends. Each reads only the PatientRecord."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from statistics import median

from cds_service.days import day
from cds_service.knowledge import Ingredient, Knowledge
from cds_service.record import (
    SAME_DRAW,
    Count,
    DrugExposure,
    PatientRecord,
    Temperature,
    format_count,
    received_as_shown,
)
from cds_service.rules.base import RuleContext, shown_limit
from cds_service.rules.judgements import Fever, NeutrophilState


def fmt(value: float) -> str:
    """A count for card text: at most 3 significant digits (clinical rules §2.5 display)."""
    return format_count(value)


def below(count: Count, limit: float) -> str:
    """ "3.20 < 3.5 x10^9/L"; a censored value is not a formula ("< 3 x10^9/L, below 3.5")."""
    if count.comparator:
        return f"{count.bound} x10^9/L, below {limit:g}"
    return f"{count.bound} < {limit:g} x10^9/L"


def neutrophil_state(
    record: PatientRecord, k: Knowledge, include_preliminary: bool
) -> NeutrophilState:
    days = k.threshold("current_days")
    wbc = record.latest("wbc", include_preliminary, days)
    anc = record.latest("anc", include_preliminary, days)
    superseded = (
        anc is not None
        and wbc is not None
        and anc.time < wbc.time - SAME_DRAW
        and not (anc.specimen and anc.specimen == wbc.specimen)
    )
    anc_unknown = superseded or anc is None
    return NeutrophilState(
        wbc,
        None if superseded else anc,
        anc_unknown,
        anc if superseded else None,
        anc_unknown and wbc is not None and wbc.value < k.threshold("grade4_leukopenia_wbc"),
    )


def critical_state(record: PatientRecord, k: Knowledge) -> NeutrophilState:
    """Critical rules may use preliminary results (setting, clinical rules §2.1)."""
    return neutrophil_state(record, k, bool(k.settings["preliminary_critical_results"]))


def _reading(t: Temperature) -> str:
    """A temperature in °C; the value as received only when it was not already in Celsius."""
    notes = [] if received_as_shown(t.received, t.celsius) else [f"received {t.received}"]
    notes += [t.site] if t.site else []
    shown = f" ({', '.join(notes)})" if notes else ""
    return f"{t.celsius:.1f} °C{shown} at {t.time:%Y-%m-%d %H:%M} UTC"


def fever(record: PatientRecord, k: Knowledge) -> Fever | None:
    """IDSA 2010: one temperature >= 38.3 °C, or >= 38.0 °C sustained over >= 1 h (two readings
    at least 60 min apart with none lower between), within the last 24 h; or a fever Condition
    with onset in the last 24 h."""
    since = record.now - timedelta(hours=k.threshold("fever_window_hours"))
    window = sorted(
        (t for t in record.temperatures if since <= t.time <= record.now), key=lambda t: t.time
    )
    single = [t for t in window if t.celsius >= k.threshold("fever_single_cel")]
    if single:
        return Fever(f"temperature {_reading(single[-1])}", (single[-1],))
    sustained = k.threshold("fever_sustained_cel")
    minimum = timedelta(minutes=k.threshold("fever_sustained_minutes"))
    for i, first in enumerate(window):
        if first.celsius < sustained:
            continue
        for later in window[i + 1 :]:
            if later.celsius < sustained:
                break
            if later.time - first.time >= minimum:
                return Fever(
                    f"temperature of at least {sustained:.1f} °C sustained over "
                    f"{shown_limit(minimum.total_seconds() / 3600)} h: "
                    f"{_reading(first)} and {_reading(later)}",
                    (first, later),
                )
    for display, onset in record.fever_conditions:
        if since <= onset <= record.now:
            return Fever(f"fever recorded as a condition ({display}) on {day(onset)}", ())
    return None


def is_low_wbc(count: Count, k: Knowledge) -> bool:
    """Leukopenia: WBC < 4.0, or below the lab's lower limit when that is higher."""
    return count.value < max(k.threshold("leukopenia_wbc"), count.low or 0.0)


@dataclass(frozen=True)
class Baseline:
    """What the latest value is compared with: the median of the earlier values of the last 6
    months when there are at least 3, else the latest earlier value of those 6 months."""

    value: float
    name: str  # "6-month median" | "earlier value"
    date: str  # the earlier value's date; "" for a median

    def describe(self) -> str:
        when = f" on {self.date}" if self.date else ""
        return f"{self.name} {fmt(self.value)}{when}"


def baseline(record: PatientRecord, latest: Count, k: Knowledge) -> Baseline | None:
    """Choice where the spec is silent: the 3 values are earlier values (the latest is what is
    compared); with 1 or 2 earlier values the comparison uses the newest of them, worded
    "earlier value", so a fall is still seen without calling one value a median."""
    since = latest.time - timedelta(days=k.threshold("baseline_median_days"))
    earlier = [
        c for c in record.series(latest.analyte) if since <= c.time < latest.time - SAME_DRAW
    ]
    # clinical rules §3 wording v3: a "6-month median" needs at least 3 values.
    if len(earlier) >= k.threshold("baseline_median_min_values"):
        return Baseline(median(c.value for c in earlier), "6-month median", "")
    if earlier:
        return Baseline(earlier[0].value, "earlier value", day(earlier[0].time))
    return None


def six_month_median(record: PatientRecord, latest: Count, k: Knowledge) -> float | None:
    """The baseline value (median of >= 3 earlier values, else the latest earlier value)."""
    found = baseline(record, latest, k)
    return found.value if found else None


def trend(record: PatientRecord, analyte: str, limit: int = 4) -> str:
    """Earlier values, newest first, for the evidence text."""
    values = record.series(analyte)[1 : limit + 1]
    return ", ".join(f"{c.bound} on {day(c.time)}" for c in values)


def count_evidence(record: PatientRecord, k: Knowledge, state: NeutrophilState) -> list[str]:
    """Evidence lines for the current WBC (with trend and 6-month median) and ANC."""
    lines = []
    if state.wbc:
        lines.append(f"WBC {state.wbc.describe()}")
        earlier = trend(record, "wbc")
        if earlier:
            lines.append(f"Earlier WBC: {earlier}")
        found = baseline(record, state.wbc, k)
        if found is not None and found.name == "6-month median":
            lines.append(f"6-month median WBC {fmt(found.value)} x10^9/L")
    if state.anc:
        lines.append(f"ANC {state.anc.describe()}")
    elif state.wbc:
        lines.append("No differential from the latest draw: ANC unknown")
    return lines


def is_mycophenolate(ingredient: Ingredient) -> bool:
    return ingredient.moiety == "mycophenolate"


def duffy_null_anc_limit(k: Knowledge, mycophenolate: bool) -> float:
    """The ANC a Duffy-null patient must stay above: mycophenolate's label limit is its own."""
    return k.threshold("duffy_null_anc_mycophenolate" if mycophenolate else "duffy_null_anc")


def dose_review_reasons(ctx: RuleContext, ingredients: list[Ingredient]) -> list[str]:
    """Why the counts meet the dose-review warning threshold on these drugs (clinical rules
    §2.4), already taking a documented Duffy-null phenotype into account; [] if they do not."""
    record, k, state = ctx.record, ctx.knowledge, ctx.neutrophils
    alc = record.latest("alc", max_age_days=k.threshold("current_days"))
    mycophenolate = any(is_mycophenolate(i) for i in ingredients)
    anc_limit = k.threshold("dose_review_anc_mycophenolate" if mycophenolate else "dose_review_anc")
    # The gravest criterion first (v4: summaries quote the ANC before the WBC).
    neutrophil_reasons: list[str] = []
    if state.anc and state.anc.value < anc_limit:
        neutrophil_reasons.append(
            f"ANC {below(state.anc, anc_limit)}"
            + (" (mycophenolate label)" if mycophenolate else "")
        )
    if state.wbc and state.wbc.value < k.threshold("dose_review_wbc"):
        neutrophil_reasons.append(f"WBC {below(state.wbc, k.threshold('dose_review_wbc'))}")
    for count in (state.wbc, state.anc):
        drop = _significant_drop(record, count, k)
        if drop:
            neutrophil_reasons.append(drop)
    if neutrophil_reasons and record.duffy_null:
        if _duffy_null_explains(record, state, k, mycophenolate):
            neutrophil_reasons = []
        elif (fall := _duffy_null_fall(record, state, k)) is not None:
            # Within the Duffy-null limits the fall is what decided: quoted first (v4).
            within = (
                state.anc is not None
                and state.wbc is not None
                and state.anc.value >= duffy_null_anc_limit(k, mycophenolate)
                and state.wbc.value >= k.threshold("duffy_null_wbc")
            )
            neutrophil_reasons.insert(0 if within else len(neutrophil_reasons), fall)
    reasons = neutrophil_reasons
    if alc and alc.value < k.threshold("dose_review_alc"):
        reasons.append(f"ALC {below(alc, k.threshold('dose_review_alc'))}")
    return reasons


def _significant_drop(record: PatientRecord, count: Count | None, k: Knowledge) -> str | None:
    """Fallen >= 30% from the 6-month median to below the lab's lower limit."""
    if count is None:
        return None
    found = baseline(record, count, k)
    if found is None or found.value <= 0:
        return None
    if record.duffy_null:
        # A Duffy-null patient's fall is judged against the Duffy-null reference low (ANC
        # 1.21, WBC 3.00), not the lab's range (clinical rules §3 wording v4).
        lower_limit = k.threshold(
            "duffy_null_wbc" if count.analyte == "wbc" else "duffy_null_reference_anc"
        )
    elif count.low is not None:
        lower_limit = count.low
    else:
        lower_limit = k.threshold(
            "leukopenia_wbc" if count.analyte == "wbc" else "mild_neutropenia_anc"
        )
    fallen = (found.value - count.value) / found.value
    if fallen >= k.threshold("dose_review_drop_fraction") and count.value < lower_limit:
        name = count.analyte.upper()
        return (
            f"{name} {count.bound} fell {fallen:.0%} from the {found.describe()}, below "
            f"the lower limit {fmt(lower_limit)} x10^9/L"
        )
    return None


def _duffy_null_fall(record: PatientRecord, state: NeutrophilState, k: Knowledge) -> str | None:
    """The ANC fall that a Duffy-null associated neutrophil count does not explain (>= 25% or
    >= 0.5 below the patient's 6-month median, clinical rules §2.4), in words."""
    if state.anc is None or state.anc_unknown:
        return None
    found = baseline(record, state.anc, k)
    if found is None or found.value <= 0:
        return None
    fall = found.value - state.anc.value
    if fall < k.threshold("duffy_null_drop_absolute") and fall / found.value < k.threshold(
        "duffy_null_drop_fraction"
    ):
        return None
    return (
        f"ANC {fmt(state.anc.value)} fell {fall / found.value:.0%} from the {found.describe()} "
        "(not explained by Duffy-null status)"
    )


def _duffy_null_explains(
    record: PatientRecord, state: NeutrophilState, k: Knowledge, mycophenolate: bool
) -> bool:
    """Duffy-null associated neutrophil count (clinical rules §2.4): a low-normal ANC is
    expected, so the neutrophil criteria are suppressed only while ANC and WBC stay above the
    Duffy-null limits and the ANC has not fallen."""
    if state.anc is None or state.anc_unknown or state.wbc is None:
        return False
    anc_limit = duffy_null_anc_limit(k, mycophenolate)
    if state.anc.value < anc_limit or state.wbc.value < k.threshold("duffy_null_wbc"):
        return False
    baseline = six_month_median(record, state.anc, k)
    if baseline is None:
        return True
    fall = baseline - state.anc.value
    return not (
        fall >= k.threshold("duffy_null_drop_absolute")
        or (baseline > 0 and fall / baseline >= k.threshold("duffy_null_drop_fraction"))
    )


def duffy_null_could_explain(ctx: RuleContext, reasons: list[str]) -> bool:
    """Whether "patient is Duffy-null" fits as an override reason (clinical rules §3
    suggestions v4): only for a card triggered by counts a Duffy-null associated neutrophil
    count could explain, that is an ANC of at least 1.0 and a WBC of at least the Duffy-null
    reference low (3.00); never for a lymphopenia (ALC) trigger or a fall from the patient's
    own baseline. Choice where the spec is silent: not offered when Duffy-null status is
    already documented, because the rule has then judged the counts against the Duffy-null
    reference and fired anyway."""
    k, state = ctx.knowledge, ctx.neutrophils
    if ctx.record.duffy_null or not reasons:
        return False
    if any(r.startswith("ALC") or " fell " in r for r in reasons):
        return False
    anc_fits = state.anc is None or state.anc.value >= k.threshold("moderate_neutropenia_anc")
    wbc_fits = state.wbc is None or state.wbc.value >= k.threshold("duffy_null_wbc")
    return anc_fits and wbc_fits


def tier_a_current(record: PatientRecord) -> list[DrugExposure]:
    return record.current_drugs("tier_a")


def dangerous_combinations(
    record: PatientRecord, k: Knowledge, extra_current: list[Ingredient] | None = None
) -> list[tuple[str, str, str]]:
    """(drug, partner, advice) for each dangerous combination among current drugs."""
    current = {e.ingredient.id for e in record.exposures.values() if e.current}
    current |= {i.id for i in extra_current or []}
    found = []
    for combination in k.combinations:
        for drug in sorted(combination.drugs & current):
            for partner in sorted(combination.partners & current):
                found.append((drug, partner, combination.advice))
    return found


def drug_list(exposures: list[DrugExposure]) -> str:
    return ", ".join(e.describe() for e in exposures)
