"""Coefficient revision: the community's coefficients recomputed from the latest history, compared with the
agreement in force member by member, before anything is sent to the distributor.

RD 244/2019 lets a collective self-consumption agreement change its hourly coefficients (the revision the
community plans, e.g. every four months, or when members join or leave); the manager approves the new file.
This module only computes and compares; `energytwin community revise --approve` writes the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from community.accounting import MemberPrices, savings_by_member_eur
from community.planning import Expected
from community.settlement import settle
from community.sharing import SharingRules, shares_by_method


@dataclass(frozen=True)
class Side:
    """One set of coefficients settled on the expected data."""

    beta: np.ndarray
    self_consumed_kwh: np.ndarray  # per member
    savings_eur: np.ndarray  # per member
    violations: list[str]


@dataclass(frozen=True)
class Revision:
    current: Side
    proposed: Side
    generation_kwh: float


def _side(beta: np.ndarray, expected: Expected, rules: SharingRules, tz: str, prices: MemberPrices | None) -> Side:
    s = settle(beta, expected.generation_kwh, expected.consumption_kwh)
    per_member = np.nansum(s.self_consumed_kwh, axis=1)
    savings = (savings_by_member_eur(s, expected.hour_starts_utc, tz, prices) if prices is not None
               else np.zeros(beta.shape[0]))
    return Side(beta, per_member, savings, rules.violations(beta, expected.generation_kwh))


def revise(current_beta: np.ndarray, expected: Expected, rules: SharingRules, tz: str,
           prices: MemberPrices | None, method: str = "optimal") -> Revision:
    """The agreement in force and `method`'s new coefficients, both on the same expected hours."""
    if current_beta.shape != expected.consumption_kwh.shape:
        raise ValueError(f"the current coefficients cover {current_beta.shape[0]} members x {current_beta.shape[1]} "
                         f"hours, the expected data {expected.consumption_kwh.shape[0]} x "
                         f"{expected.consumption_kwh.shape[1]}")
    beta = shares_by_method(method, expected.consumption_kwh, expected.generation_kwh, rules,
                            scenarios=expected.scenarios)
    return Revision(_side(current_beta, expected, rules, tz, prices), _side(beta, expected, rules, tz, prices),
                    float(np.nansum(expected.generation_kwh)))
