"""Cell counts (WBC, ANC, ALC) as the rules see them (clinical rules §2.3): each result
converted to 10^9/L with its lab range, then one ANC and one ALC per draw from the best source
(manual differential, segmented + band counts, automated count, then % x same-draw WBC); a %
is never compared with a count, and a result contradicting the WBC of its draw is set aside."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.knowledge import Knowledge
from cds_service.record import units
from cds_service.record.draws import ChosenDraws, DrawIndex
from cds_service.record.model import PRELIMINARY, SAME_DRAW, Count, Raw
from cds_service.record.reader import ChartReader, specimen_of

# Source priority within one draw (lower wins): clinical rules §2.3.
_METHOD_PRIORITY = {"manual": 0, "segmented + bands": 1, "automated": 2, "computed": 3, "flow": 4}


def _censored(quantity: Raw) -> str:
    """The comparator of a censored result (clinical rules §2.3). `<` and `<=` make the value
    an upper bound, judged as the bound. `>` and `>=` (a lower bound) are returned too, so that
    the caller can refuse them: see `CountReader.count`."""
    comparator = quantity.get("comparator")
    return comparator if comparator in ("<", "<=", ">", ">=") else ""


@dataclass(frozen=True)
class _Percent:
    of: str  # anc | alc
    percent: float
    time: datetime
    status: str
    specimen: str | None
    reference: str
    what: str


class CountReader(ChartReader):
    """Collects count candidates while Observations are read; `finish_counts` picks them."""

    def __init__(
        self, knowledge: Knowledge, now: datetime, patient_id: str, by_reference: Mapping[str, Raw]
    ) -> None:
        super().__init__(knowledge, now, patient_id, by_reference)
        self.candidates: dict[str, list[Count]] = {"wbc": [], "anc": [], "alc": []}
        self.segmented: list[Count] = []
        self.bands: list[Count] = []
        self.percents: list[_Percent] = []
        self.count_aliases = knowledge.units["count_factor_to_10e9_per_L"]["exact"]
        self.wbcs: DrawIndex[Count] = DrawIndex([])  # the WBCs by draw, once all are read

    def count(
        self,
        obs: Raw,
        analyte: str,
        code: tuple[str, str],
        quantity: Raw,
        received: str,
        time: datetime,
        what: str,
        ref: str,
        flagged: bool = False,
    ) -> None:
        factor = units.count_factor(quantity, self.count_aliases)
        comparator = _censored(quantity)
        if comparator.startswith(">"):
            # Choice where the rules are silent: a lower bound (">0.4") says only that the
            # count is at least that much. Judged as the bound it would read as severe
            # neutropenia; judged as normal it would hide one. It is neither: a data note.
            reason = "reported only as a lower bound: the count itself is unknown"
            value = float(quantity["value"]) * factor if factor is not None else None
            self.unusable(what, received, time, reason, ref, analyte, value, comparator)
            return
        if factor is None:
            unit = units.received_unit(quantity)
            reason = f"unknown unit ({unit}): not converted" if unit else "no unit: not converted"
            self.unusable(
                what,
                received,
                time,
                reason,
                ref,
                analyte,
                float(quantity["value"]),
                comparator,
                flagged,
            )
            return
        low, high = self.reference_range(obs, factor)
        method = self.k.method_by_code.get(code, "automated")
        count = Count(
            analyte=analyte,
            value=float(quantity["value"]) * factor,
            received=received,
            time=time,
            status=str(obs["status"]),
            method=method,
            reference=ref,
            specimen=specimen_of(obs),
            low=low,
            high=high,
            comparator=comparator,
            critical_low=flagged,
        )
        if analyte == "neutrophils_segmented":
            self.segmented.append(count)
        elif analyte == "neutrophils_band":
            self.bands.append(count)
        else:
            self.candidates[analyte].append(count)

    def reference_range(self, obs: Raw, value_factor: float) -> tuple[float | None, float | None]:
        """The lab's normal range in 10^9/L; a bound without a unit shares the value's unit."""
        ranges = obs.get("referenceRange")
        if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
            return None, None
        bounds: list[float | None] = []
        for key in ("low", "high"):
            bound = ranges[0].get(key)
            if not isinstance(bound, dict) or not isinstance(bound.get("value"), int | float):
                bounds.append(None)
                continue
            has_unit = bound.get("code") or bound.get("unit")
            factor = units.count_factor(bound, self.count_aliases) if has_unit else value_factor
            bounds.append(float(bound["value"]) * factor if factor is not None else None)
        return bounds[0], bounds[1]

    def percent(
        self,
        obs: Raw,
        analyte: str,
        quantity: Raw,
        received: str,
        time: datetime,
        what: str,
        ref: str,
    ) -> None:
        """A differential %: kept until `finish_counts` multiplies it by the WBC of its draw."""
        if not units.is_percent(quantity, self.k.units["percent_units"]):
            self.unusable(what, received, time, "a percentage with a non-% unit", ref, analyte)
            return
        of = "anc" if analyte == "neutrophil_percent" else "alc"
        status = str(obs.get("status"))
        self.percents.append(
            _Percent(of, float(quantity["value"]), time, status, specimen_of(obs), ref, what)
        )

    def finish_counts(self) -> None:
        """Pick one ANC and one ALC per draw, drop superseded preliminaries, sort."""
        self.wbcs = DrawIndex(self.candidates["wbc"])
        self.candidates["anc"].extend(self._segmented_plus_bands())
        for pct in self.percents:
            self.check_deadline()
            wbc = self._wbc_of_draw(pct.time, pct.specimen)
            if wbc is None:
                self.unusable(
                    pct.what,
                    f"{pct.percent:g} %",
                    pct.time,
                    "a percentage with no WBC from the same specimen: not compared "
                    "with count thresholds",
                    pct.reference,
                    "neutrophil_percent" if pct.of == "anc" else "lymphocyte_percent",
                )
                continue
            status = PRELIMINARY if PRELIMINARY in (pct.status, wbc.status) else pct.status
            self.candidates[pct.of].append(
                Count(
                    analyte=pct.of,
                    value=wbc.value * pct.percent / 100.0,
                    received=f"{pct.percent:g} % x WBC {wbc.value:.2f}",
                    time=pct.time,
                    status=status,
                    method="computed",
                    reference=pct.reference,
                    specimen=pct.specimen or wbc.specimen,
                    low=None,
                    high=None,
                    note="computed from the differential %",
                )
            )
        for analyte, candidates in self.candidates.items():
            chosen = self._one_per_draw(candidates)
            self.record.counts[analyte] = sorted(chosen, key=lambda c: c.time, reverse=True)
        self._flag_contradictions()

    def _wbc_of_draw(self, time: datetime, specimen: str | None) -> Count | None:
        matches = self.wbcs.of_draw(time, specimen)
        matches.sort(key=lambda w: (w.is_preliminary, abs((w.time - time).total_seconds())))
        return matches[0] if matches else None

    def _segmented_plus_bands(self) -> list[Count]:
        totals = []
        bands = DrawIndex(self.bands)
        for seg in self.segmented:
            self.check_deadline()
            band = next(iter(bands.of_draw(seg.time, seg.specimen)), None)
            totals.append(
                Count(
                    analyte="anc",
                    value=seg.value + (band.value if band else 0.0),
                    received=seg.received + (f" + bands {band.received}" if band else ""),
                    time=seg.time,
                    status=seg.status,
                    method="segmented + bands",
                    reference=seg.reference,
                    specimen=seg.specimen,
                    low=seg.low,
                    high=seg.high,
                    note="" if band else "bands not reported",
                )
            )
        return totals

    @staticmethod
    def _one_per_draw(candidates: list[Count]) -> list[Count]:
        """Best source per draw; a preliminary result yields to a final one of the same draw."""
        ranked = sorted(candidates, key=lambda c: (c.is_preliminary, _METHOD_PRIORITY[c.method]))
        chosen: list[Count] = []
        draws = ChosenDraws()
        for count in ranked:
            tolerance = timedelta(days=1) if count.method == "flow" else SAME_DRAW
            if not draws.holds(count.time, count.specimen, tolerance):
                chosen.append(count)
                draws.add(count.time, count.specimen)
        return chosen

    def _flag_contradictions(self) -> None:
        """An ANC or ALC larger than the WBC of the same draw cannot both be right."""
        for analyte in ("anc", "alc"):
            kept = []
            for count in self.record.counts[analyte]:
                self.check_deadline()
                wbc = self._wbc_of_draw(count.time, count.specimen)
                if wbc is not None and count.value > wbc.value * 1.05 + 0.05:
                    self.unusable(
                        self.k.analyte_display[analyte],
                        count.received,
                        count.time,
                        f"contradicts the WBC of the same draw ({wbc.value:.2f} x10^9/L)",
                        count.reference,
                        analyte,
                    )
                    continue
                kept.append(count)
            self.record.counts[analyte] = kept
