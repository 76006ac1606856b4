"""CO2 avoided by self-consumed energy and its "trees" equivalent (docs/community.md, "CO₂ factors")."""

from __future__ import annotations

# Official RITE factor for final electricity, Spain peninsula (document of 20 Jul 2014, used by CTE DB-HE).
# Stable and citable; the real generation mix has fallen fast since (REE: 0.26 t/MWh 2015 -> 0.19 in 2019),
# so this default overstates today's savings: communities should set the factor and year they want to show.
SPAIN_PENINSULA_KG_PER_KWH = 0.331
# Usual calculator default for a mature tree (48 lb of CO2 per year); real trees range 10-40+ kg.
TREE_KG_CO2_PER_YEAR = 21.77


def co2_avoided_kg(self_consumed_kwh: float, factor_kg_per_kwh: float = SPAIN_PENINSULA_KG_PER_KWH) -> float:
    """CO2 not emitted because the energy came from the shared installation instead of the grid.

    avoided = self-consumed kWh x grid emission factor (RITE 2014 factors; docs/community.md).
    """
    return self_consumed_kwh * factor_kg_per_kwh


def tree_years(co2_kg: float, tree_kg_co2_per_year: float = TREE_KG_CO2_PER_YEAR) -> float:
    """Trees that would absorb `co2_kg` in one year: avoided kg / 21.77 kg per tree-year (docs/community.md)."""
    return co2_kg / tree_kg_co2_per_year
