"""Hourly settlement of collective self-consumption (Spain) and the household view (Netherlands).

Pure array functions: rows are members, columns are hours. NaN (a missing hour) propagates, so a gap in a
member's data shows up as a gap in its settlement instead of as zero consumption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def net_generation_kwh(export_kwh: np.ndarray, import_kwh: np.ndarray) -> np.ndarray:
    """Net hourly generation G_h of an installation: exported minus its own auxiliary import, never below 0.

    RD 244/2019 shares the *net* generation; at night the inverter draws a little from the grid, which is the
    installation's own consumption, not negative generation to hand out (RD 244/2019 Annex I; docs/community.md, "Legal frame (Spain)").
    """
    return np.maximum(np.asarray(export_kwh, float) - np.asarray(import_kwh, float), 0.0)


def assigned_kwh(beta: np.ndarray, generation_kwh: np.ndarray) -> np.ndarray:
    """E_i,h = beta_i,h x G_h (RD 244/2019 Annex I as rewritten by Orden TED/1247/2021)."""
    return np.asarray(beta, float) * np.asarray(generation_kwh, float)[np.newaxis, :]


def self_consumed_kwh(consumption_kwh: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """A_i,h = min(C_i,h, E_i,h): "energía autoconsumida", pays no tolls or charges (RD 244/2019)."""
    return np.minimum(consumption_kwh, assigned)


def grid_import_kwh(consumption_kwh: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """I_i,h = max(0, C_i,h - E_i,h): bought from the retailer as usual."""
    return np.maximum(consumption_kwh - assigned, 0.0)


def surplus_kwh(consumption_kwh: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """X_i,h = max(0, E_i,h - C_i,h): "excedentes", compensated or sold (RD 244/2019)."""
    return np.maximum(assigned - consumption_kwh, 0.0)


def household_consumption_kwh(
    production_kwh: np.ndarray, delivered_kwh: np.ndarray, fed_back_kwh: np.ndarray
):
    """V = P + L - T: what a household with its own PV used (Dutch netting, docs/community.md "Household view (Netherlands)")."""
    return (
        np.asarray(production_kwh, float) + np.asarray(delivered_kwh, float) - np.asarray(fed_back_kwh, float)
    )


def direct_self_use_kwh(production_kwh: np.ndarray, fed_back_kwh: np.ndarray) -> np.ndarray:
    """P - T: the own production used at home without touching the grid."""
    return np.asarray(production_kwh, float) - np.asarray(fed_back_kwh, float)


@dataclass(frozen=True)
class Settlement:
    """Per member and hour: consumption C, assigned E, self-consumed A, import I, surplus X (kWh)."""

    consumption_kwh: np.ndarray
    assigned_kwh: np.ndarray
    self_consumed_kwh: np.ndarray
    grid_import_kwh: np.ndarray
    surplus_kwh: np.ndarray

    @property
    def community_self_consumption_ratio(self) -> float:
        """Share of the generation the members used in the same hour: sum A / sum E over complete hours."""
        ok = ~np.isnan(self.self_consumed_kwh)
        total = float(self.assigned_kwh[ok].sum())
        return float(self.self_consumed_kwh[ok].sum()) / total if total > 0 else 0.0


def settle(beta: np.ndarray, generation_kwh: np.ndarray, consumption_kwh: np.ndarray) -> Settlement:
    """Apply the settlement formulas (docs/community.md) to every member and hour."""
    beta = np.asarray(beta, float)
    consumption = np.asarray(consumption_kwh, float)
    if beta.shape != consumption.shape:
        raise ValueError(f"beta has shape {beta.shape} but consumption {consumption.shape} (members x hours)")
    if np.asarray(generation_kwh).shape != (beta.shape[1],):
        raise ValueError(
            f"generation has {np.asarray(generation_kwh).shape} values, expected {beta.shape[1]}"
        )
    return settle_assigned(assigned_kwh(beta, generation_kwh), consumption)


def settle_assigned(assigned: np.ndarray, consumption_kwh: np.ndarray) -> Settlement:
    """The settlement formulas on an assignment already summed over installations (E_i = sum_k beta_k,i G_k)."""
    c = np.asarray(consumption_kwh, float)
    e = np.asarray(assigned, float)
    return Settlement(c, e, self_consumed_kwh(c, e), grid_import_kwh(c, e), surplus_kwh(c, e))
