"""Hourly sharing coefficients: fixed, proportional to expected consumption, and optimal (linear programme).

All methods return beta as a (members x hours) array with every column adding up to 1, and all of them respect
the community's rules (reference/community.md §1.4): a minimum and a cap per member, a reserve for the
energy-poverty households; the optimal method can also bound each member's share of the year's generation
around its fixed share (fairness).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from community.config import Community, member_bounds

_TOL = 1e-9


class InfeasibleRules(ValueError):
    """No set of coefficients satisfies the rules on this data (the message says which rule binds)."""


@dataclass(frozen=True)
class SharingRules:
    """The rules as arrays over members (same order as the consumption rows)."""

    lower: np.ndarray  # minimum beta per member, every hour
    upper: np.ndarray  # cap per member, every hour
    entitlement: np.ndarray  # fixed shares (sum 1): the fixed method, zero-demand hours, fairness reference
    reserve: float = 0.0  # minimum total beta of the energy-poverty members, every hour
    reserve_members: np.ndarray | None = None  # bool per member
    fairness_tolerance: float | None = None  # yearly share within (1 +/- tol) x entitlement

    @property
    def n_members(self) -> int:
        return int(self.lower.size)

    @property
    def poor(self) -> np.ndarray:
        return (
            np.zeros(self.n_members, bool)
            if self.reserve_members is None
            else np.asarray(self.reserve_members)
        )

    @classmethod
    def unconstrained(cls, n_members: int) -> SharingRules:
        return cls(np.zeros(n_members), np.ones(n_members), np.full(n_members, 1.0 / n_members))

    @classmethod
    def from_community(cls, community: Community) -> SharingRules:
        bounds = np.array([member_bounds(community, m) for m in community.members], float)
        members = community.members
        basis = community.rules.fixed_shares
        if basis == "investment":
            raw = np.array([m.investment_eur or 0.0 for m in members], float)
        elif basis == "share":
            raw = np.array([m.share or 0.0 for m in members], float)
        else:
            raw = np.ones(len(members))
        return cls(
            lower=bounds[:, 0],
            upper=bounds[:, 1],
            entitlement=raw / raw.sum(),
            reserve=community.rules.energy_poverty_reserve,
            reserve_members=np.array([m.energy_poverty for m in members], bool),
            fairness_tolerance=community.rules.fairness_tolerance,
        )

    def violations(
        self, beta: np.ndarray, generation_kwh: np.ndarray | None = None, tol: float = 1e-7
    ) -> list[str]:
        """What in `beta` breaks the rules beyond `tol` (the LP solver's feasibility tolerance); empty if nothing."""
        out = []
        sums = beta.sum(axis=0)
        if np.abs(sums - 1).max() > tol:
            out.append(f"hour {int(np.argmax(np.abs(sums - 1))) + 1}: betas add up to {sums.max():.9f}")
        if (beta < -tol).any():
            out.append("a beta is negative")
        below = beta < self.lower[:, None] - tol
        if below.any():
            i, h = np.argwhere(below)[0]
            out.append(f"member {i} hour {h + 1}: {beta[i, h]:.9f} below the minimum {self.lower[i]}")
        above = beta > self.upper[:, None] + tol
        if above.any():
            i, h = np.argwhere(above)[0]
            out.append(f"member {i} hour {h + 1}: {beta[i, h]:.9f} above the cap {self.upper[i]}")
        if self.reserve > 0:
            group = beta[self.poor].sum(axis=0)
            if (group < self.reserve - tol).any():
                h = int(np.argmin(group))
                out.append(
                    f"hour {h + 1}: energy-poverty members hold {group[h]:.9f} < reserve {self.reserve}"
                )
        if self.fairness_tolerance is not None and generation_kwh is not None:
            total = float(np.sum(generation_kwh))
            if total > 0:
                share = beta @ generation_kwh / total
                lo = (1 - self.fairness_tolerance) * self.entitlement
                hi = (1 + self.fairness_tolerance) * self.entitlement
                for i in np.flatnonzero((share < lo - 1e-7) | (share > hi + 1e-7)):
                    out.append(f"member {i}: yearly share {share[i]:.6f} outside [{lo[i]:.6f}, {hi[i]:.6f}]")
        return out


def fixed_shares(n_hours: int, rules: SharingRules) -> np.ndarray:
    """The same beta every hour: the agreement's fixed shares (equal, by investment, or explicit), ruled."""
    return apply_rules(np.repeat(rules.entitlement[:, None], n_hours, axis=1), rules)


def proportional_shares(expected_consumption_kwh: np.ndarray, rules: SharingRules) -> np.ndarray:
    """beta_i,h = C_i,h / sum_j C_j,h on expected consumption, then the rules (iotlibre LEADING's method).

    An hour where nobody is expected to consume falls back to the fixed shares (§1.4 uses equal shares there;
    the fixed shares are equal unless the community agreed otherwise).
    """
    c = np.clip(np.nan_to_num(np.asarray(expected_consumption_kwh, float)), 0, None)
    total = c.sum(axis=0)
    beta = np.where(total > 0, c / np.where(total > 0, total, 1.0), rules.entitlement[:, None])
    return apply_rules(beta, rules)


def apply_rules(beta: np.ndarray, rules: SharingRules) -> np.ndarray:
    """Bring shares that add up to 1 within the rules, moving as little as the §1.4 practice does.

    1. Energy-poverty reserve: scale everyone by (1 - p) and give p to the designated households in proportion
       to their own shares (equally when theirs are all zero).
    2. Minimum and cap: clip, and hand the excess (or take the deficit) proportionally to the members still
       free to move, repeating until no bound is crossed. The two groups (energy-poverty members and the rest)
       are fitted separately so step 2 cannot undo step 1.
    """
    beta = np.array(beta, float)
    poor = rules.poor
    if rules.reserve > 0 and poor.any():
        group = beta[poor]
        gsum = group.sum(axis=0)
        weights = np.where(gsum > 0, group / np.where(gsum > 0, gsum, 1.0), 1.0 / poor.sum())
        beta = beta * (1 - rules.reserve)
        beta[poor] += rules.reserve * weights
        lo, hi = rules.lower, rules.upper
        poor_total = beta[poor].sum(axis=0)
        t_lo = max(rules.reserve, lo[poor].sum(), 1 - hi[~poor].sum())
        t_hi = min(hi[poor].sum(), 1 - lo[~poor].sum())
        if t_lo > t_hi + _TOL:
            raise InfeasibleRules("the energy-poverty reserve and the members' minimums/caps cannot all hold")
        poor_total = np.clip(poor_total, t_lo, t_hi)
        beta[poor] = _fit_to_total(beta[poor], lo[poor], hi[poor], poor_total)
        beta[~poor] = _fit_to_total(beta[~poor], lo[~poor], hi[~poor], 1 - poor_total)
    else:
        beta = _fit_to_total(beta, rules.lower, rules.upper, np.ones(beta.shape[1]))
    return beta


def _fit_to_total(beta: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Per column, beta_i = clip(lambda x wish_i, lo_i, hi_i) with the one lambda that makes it add up to `total`.

    Scaling everyone's wish by the same factor keeps the proportions among the members no bound touches, which
    is what "take the deficit (hand the excess) proportionally from (to) the others" means. A tiny equal wish
    (1e-9) lets members who wished for nothing absorb what is left only once everyone else is capped.
    """
    if beta.shape[0] == 0:
        return beta
    if lo.sum() > total.min() + _TOL or hi.sum() < total.max() - _TOL:
        raise InfeasibleRules(
            f"{beta.shape[0]} members with minimums adding to {lo.sum():.6f} and caps adding to {hi.sum():.6f} "
            f"cannot share a total of {total.min():.6f}..{total.max():.6f}"
        )
    wish = np.clip(beta, 0, None) + 1e-9
    lo_c, hi_c = lo[:, None], hi[:, None]
    log_lo = np.full(beta.shape[1], -12.0)  # log10 lambda brackets: 1e-12 x wish is below any minimum,
    log_hi = np.full(beta.shape[1], 13.0)  # 1e13 x 1e-9 is above any cap
    for _ in range(90):
        mid = (log_lo + log_hi) / 2
        too_much = np.clip(10.0**mid * wish, lo_c, hi_c).sum(axis=0) > total
        log_hi = np.where(too_much, mid, log_hi)
        log_lo = np.where(too_much, log_lo, mid)
    b = np.clip(10.0**log_lo * wish, lo_c, hi_c)
    # The bisection leaves ~1e-15 relative; put that residue on members strictly inside their bounds.
    diff = total - b.sum(axis=0)
    inside = (b > lo_c + 1e-12) & (b < hi_c - 1e-12)
    weights = np.where(inside, b, 0.0)
    wsum = weights.sum(axis=0)
    b = b + np.where(wsum > 0, diff / np.where(wsum > 0, wsum, 1.0), 0.0) * weights
    return np.clip(b, lo_c, hi_c)


@dataclass(frozen=True)
class OptimalResult:
    """The optimal coefficients and what the solver reported."""

    beta: np.ndarray
    self_consumed_kwh: float  # the optimum of the programme (on the expected data)
    solve_s: float
    n_variables: int
    n_constraints: int


def optimal_shares(
    expected_consumption_kwh: np.ndarray,
    expected_generation_kwh: np.ndarray,
    rules: SharingRules,
    *,
    progress: Callable[[str], None] | None = None,
    tie_break: bool = True,
) -> OptimalResult:
    """Coefficients that maximise the energy the community self-consumes over the period (HiGHS LP).

    Stage 1, for the hours with generation (hours without it do not change any kWh):

        maximise   sum_i,h a_i,h                        (a = self-consumed energy, kWh)
        subject to a_i,h <= beta_i,h G_h,  0 <= a_i,h <= C_i,h   (A = min(C, beta G), §1.3, made linear)
                   sum_i beta_i,h = 1,  lower_i <= beta_i,h <= upper_i
                   sum_{i poor} beta_i,h >= reserve
                   (1 - tol) w_i sum_h G_h <= sum_h beta_i,h G_h <= (1 + tol) w_i sum_h G_h   (fairness)

    The optimum is rarely unique (the surplus can go to anyone), so stage 2 keeps every member's
    self-consumption at its stage-1 value and places the rest of the generation as close as possible (in kWh)
    to the proportional shares: real consumption differs from the expectation, and generation beyond the
    expected need is most likely to be used where consumption is (measured in bench/: placing it by the fixed
    shares instead loses several points of self-consumption on actual data). Hours without generation get the
    fixed shares. Both stages are linear programmes solved by HiGHS through `scipy.optimize.linprog`; with a
    fairness bound the hours are coupled and the interior-point solver is used (the simplex is far slower).
    """
    import time

    c_kwh = np.clip(np.nan_to_num(np.asarray(expected_consumption_kwh, float)), 0, None)
    g_kwh = np.clip(np.nan_to_num(np.asarray(expected_generation_kwh, float)), 0, None)
    n, n_hours = c_kwh.shape
    if g_kwh.shape != (n_hours,):
        raise ValueError(f"generation has shape {g_kwh.shape}, expected ({n_hours},)")
    beta = fixed_shares(n_hours, rules)
    reference = proportional_shares(c_kwh, rules)
    sun = np.flatnonzero(g_kwh > 1e-9)
    t0 = time.perf_counter()
    if sun.size == 0:
        return OptimalResult(beta, 0.0, 0.0, 0, 0)

    g = g_kwh[sun]
    c = c_kwh[:, sun]
    hs = sun.size
    nv = n * hs  # variables per block; index of (i, h) = h * n + i
    total_g = float(g_kwh.sum())
    idx = np.arange(nv)
    beta_lo = np.tile(rules.lower, hs)
    beta_hi = np.tile(rules.upper, hs)
    g_rep = np.repeat(g, n)

    # Rows shared by both stages: sum beta = 1 (equality), reserve and fairness (inequalities), on beta columns.
    a_eq_beta = sp.csr_matrix((np.ones(nv), (np.repeat(np.arange(hs), n), idx)), shape=(hs, nv))
    ub_rows: list[sp.csr_matrix] = []
    ub_rhs: list[np.ndarray] = []
    poor = rules.poor
    if rules.reserve > 0 and poor.any():
        mask = np.tile(poor, hs)
        cols = idx[mask]
        ub_rows.append(sp.csr_matrix((-np.ones(cols.size), (cols // n, cols)), shape=(hs, nv)))
        ub_rhs.append(np.full(hs, -rules.reserve))
    if rules.fairness_tolerance is not None:
        tol = rules.fairness_tolerance
        member = idx % n
        share_rows = sp.csr_matrix((g_rep, (member, idx)), shape=(n, nv))
        ub_rows += [share_rows, -share_rows]
        ub_rhs += [(1 + tol) * rules.entitlement * total_g, -(1 - tol) * rules.entitlement * total_g]
    beta_rows_ub = sp.vstack(ub_rows, format="csr") if ub_rows else sp.csr_matrix((0, nv))
    beta_rhs_ub = np.concatenate(ub_rhs) if ub_rhs else np.zeros(0)

    if progress:
        progress(f"stage 1: {2 * nv} variables, {nv + hs + beta_rows_ub.shape[0]} constraints")
    # Stage 1 variables [beta, a].
    link = sp.hstack([sp.diags(-g_rep), sp.identity(nv)], format="csr")  # a - G beta <= 0
    a_ub = sp.vstack(
        [link, sp.hstack([beta_rows_ub, sp.csr_matrix((beta_rows_ub.shape[0], nv))])], format="csr"
    )
    b_ub = np.concatenate([np.zeros(nv), beta_rhs_ub])
    a_eq = sp.hstack([a_eq_beta, sp.csr_matrix((hs, nv))], format="csr")
    cost = np.concatenate([np.zeros(nv), -np.ones(nv)])
    bounds = np.column_stack(
        [np.concatenate([beta_lo, np.zeros(nv)]), np.concatenate([beta_hi, c.T.ravel()])]
    )
    solver = "highs-ipm" if rules.fairness_tolerance is not None else "highs"
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(hs), bounds=bounds, method=solver)
    if res.status != 0:
        raise InfeasibleRules(f"the optimal programme has no solution with these rules: {res.message}")
    best_kwh = -float(res.fun)
    x_beta = res.x[:nv]
    a_star = res.x[nv:]
    n_constraints = a_ub.shape[0] + a_eq.shape[0]

    if tie_break:
        if progress:
            progress("stage 2: placing the surplus by expected consumption")
        # Variables [beta, d]; beta_i,h >= a*_i,h / G_h keeps each member's stage-1 self-consumption.
        keep = np.minimum(np.maximum(a_star / g_rep - 1e-9, beta_lo), beta_hi)
        ref = reference[:, sun].T.ravel()
        dev = sp.hstack([sp.identity(nv), -sp.identity(nv)], format="csr")  # beta - d <= ref
        dev2 = sp.hstack([-sp.identity(nv), -sp.identity(nv)], format="csr")  # -beta - d <= -ref
        a_ub2 = sp.vstack(
            [dev, dev2, sp.hstack([beta_rows_ub, sp.csr_matrix((beta_rows_ub.shape[0], nv))])], format="csr"
        )
        b_ub2 = np.concatenate([ref, -ref, beta_rhs_ub])
        a_eq2 = sp.hstack([a_eq_beta, sp.csr_matrix((hs, nv))], format="csr")
        cost2 = np.concatenate([np.zeros(nv), g_rep])
        bounds2 = np.column_stack(
            [np.concatenate([keep, np.zeros(nv)]), np.concatenate([beta_hi, np.full(nv, 1.0)])]
        )
        res2 = linprog(
            cost2, A_ub=a_ub2, b_ub=b_ub2, A_eq=a_eq2, b_eq=np.ones(hs), bounds=bounds2, method=solver
        )
        if res2.status == 0:
            x_beta = res2.x[:nv]
        n_constraints += a_ub2.shape[0] + a_eq2.shape[0]

    beta[:, sun] = np.clip(x_beta.reshape(hs, n).T, rules.lower[:, None], rules.upper[:, None])
    beta[:, sun] /= beta[:, sun].sum(axis=0)  # removes solver round-off (1e-12) before six-decimal rounding
    return OptimalResult(beta, best_kwh, time.perf_counter() - t0, 2 * nv, n_constraints)


METHODS = ("fixed", "proportional", "optimal")


def shares_by_method(
    method: str,
    expected_consumption_kwh: np.ndarray,
    expected_generation_kwh: np.ndarray,
    rules: SharingRules,
    progress: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Dispatch on a method name (METHODS)."""
    if method == "fixed":
        return fixed_shares(expected_consumption_kwh.shape[1], rules)
    if method == "proportional":
        return proportional_shares(expected_consumption_kwh, rules)
    if method == "optimal":
        return optimal_shares(
            expected_consumption_kwh, expected_generation_kwh, rules, progress=progress
        ).beta
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
