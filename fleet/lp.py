"""The upper bound: the fleet schedule that uses the most PV inside the community, with perfect foresight.

A linear programme over every battery and period (solved by HiGHS through scipy.optimize.linprog):

    minimise   Σ_t I_t  + ε·Σ_i,t (c_i,t + d_i,t) + 2ε·Σ_i,t u_i,t + ε/10·Σ_t X_t
    subject to Σ_i (l_i,t − g_i,t + u_i,t + c_i,t − d_i,t) = I_t − X_t          community balance (kW)
               s_i,t = s_i,t−1 + η_c,i·c_i,t·Δ − d_i,t·Δ/η_d,i                   energy in battery i (kWh)
               x_min,i·C_i ≤ s_i,t ≤ x_max,i·C_i                                 SoC window
               0 ≤ c ≤ P_c,i,  0 ≤ d ≤ P_d,i,  0 ≤ u_i,t ≤ g_i,t,  I, X ≥ 0
               −(l_i,t − g_i,t + u_i,t + c_i,t − d_i,t) ≤ E_max                  per-home export limit, if any

with load l, PV g, curtailment u, community import I and export X. Since PV + I = load + X + losses, minimising
import is minimising export plus battery losses: the most of the community's consumption covered by its own PV,
with no energy burnt in the batteries. (Minimising export alone would be wrong: an LP may charge and discharge the
same battery in the same hour, which no battery can, and "use" surplus as conversion losses.) The ε terms pick,
among equal optima, the one with the least cycling, curtailment and export. Nobody can cover more of the load on
the same data, so it bounds every online strategy's self-sufficiency and, as no strategy here burns energy,
their self-consumption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from fleet.homes import Homes

_EPSILON = 1e-4


@dataclass(frozen=True)
class LpSchedule:
    battery_kw: np.ndarray  # homes x periods, charge > 0
    curtailed_kw: np.ndarray  # homes x periods
    soc: np.ndarray  # homes x periods, fraction after each period


def optimal_schedule(homes: Homes, *, initial_soc: float = 0.5, export_limit_kw: float | None = None,
                     time_limit_s: float = 300.0) -> LpSchedule:
    """Solve the LP above; raises RuntimeError with HiGHS's message when it finds no optimum."""
    n, t_count, dt = homes.n_homes, homes.n_periods, homes.period_h
    load_kw, pv_kw = homes.load_kwh / dt, homes.pv_kwh / dt
    block = n * t_count
    # variable layout: c (block) | d (block) | s (block) | u (block) | I (T) | X (T)
    c0, d0, s0, u0, i0, x0 = 0, block, 2 * block, 3 * block, 4 * block, 4 * block + t_count
    n_vars = 4 * block + 2 * t_count
    idx = np.arange(block)
    home_of = idx // t_count
    time_of = idx % t_count

    cost = np.zeros(n_vars)
    cost[c0:c0 + block] = _EPSILON
    cost[d0:d0 + block] = _EPSILON
    cost[u0:u0 + block] = 2 * _EPSILON
    cost[i0:i0 + t_count] = 1.0
    cost[x0:x0 + t_count] = _EPSILON / 10

    # community balance: Σ c − Σ d + Σ u − I + X = Σ (g − l)
    rows = np.concatenate([time_of, time_of, time_of, np.arange(t_count), np.arange(t_count)])
    cols = np.concatenate([c0 + idx, d0 + idx, u0 + idx, i0 + np.arange(t_count), x0 + np.arange(t_count)])
    vals = np.concatenate([np.ones(block), -np.ones(block), np.ones(block), -np.ones(t_count), np.ones(t_count)])
    balance = sparse.csr_matrix((vals, (rows, cols)), shape=(t_count, n_vars))
    balance_rhs = (pv_kw - load_kw).sum(axis=0)

    # storage: s_t − s_{t−1} − η_c·Δ·c_t + Δ/η_d·d_t = (s_init if t == 0 else 0)
    eta_c = np.array([b.charge_efficiency for b in homes.batteries])[home_of]
    eta_d = np.array([b.discharge_efficiency for b in homes.batteries])[home_of]
    prev = idx[time_of > 0]
    rows = np.concatenate([idx, prev, idx, idx])
    cols = np.concatenate([s0 + idx, s0 + prev - 1, c0 + idx, d0 + idx])
    vals = np.concatenate([np.ones(block), -np.ones(prev.size), -eta_c * dt, dt / eta_d])
    storage = sparse.csr_matrix((vals, (rows, cols)), shape=(block, n_vars))
    capacity = np.array([b.capacity_kwh for b in homes.batteries])
    storage_rhs = np.where(time_of == 0, initial_soc * capacity[home_of], 0.0)

    a_eq = sparse.vstack([balance, storage], format="csr")
    b_eq = np.concatenate([balance_rhs, storage_rhs])

    a_ub, b_ub = None, None
    if export_limit_kw is not None:
        # −c + d − u ≤ E_max + l − g
        rows = np.concatenate([idx, idx, idx])
        cols = np.concatenate([c0 + idx, d0 + idx, u0 + idx])
        vals = np.concatenate([-np.ones(block), np.ones(block), -np.ones(block)])
        a_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(block, n_vars))
        b_ub = export_limit_kw + (load_kw - pv_kw).reshape(-1)

    lower = np.zeros(n_vars)
    upper = np.full(n_vars, np.inf)
    upper[c0:c0 + block] = np.array([b.max_charge_kw for b in homes.batteries])[home_of]
    upper[d0:d0 + block] = np.array([b.max_discharge_kw for b in homes.batteries])[home_of]
    lower[s0:s0 + block] = (np.array([b.soc_min for b in homes.batteries]) * capacity)[home_of]
    upper[s0:s0 + block] = (np.array([b.soc_max for b in homes.batteries]) * capacity)[home_of]
    # No end-of-run SoC constraint: the online strategies may end the run emptier than they started, and so may
    # the bound, or it would not bound them.
    upper[u0:u0 + block] = pv_kw.reshape(-1)

    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack([lower, upper]),
                     method="highs", options={"time_limit": time_limit_s, "presolve": True})
    if result.status != 0 or result.x is None:
        raise RuntimeError(f"HiGHS found no optimal fleet schedule: {result.message}")
    x = result.x
    charge = x[c0:c0 + block].reshape(n, t_count)
    discharge = x[d0:d0 + block].reshape(n, t_count)
    soc = x[s0:s0 + block].reshape(n, t_count) / capacity[:, None]
    curtailed = x[u0:u0 + block].reshape(n, t_count)
    return LpSchedule(charge - discharge, curtailed, soc)
