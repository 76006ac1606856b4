"""Hourly sharing coefficients: fixed, proportional to expected consumption, and optimal (linear programme).

All methods return beta as a (members x hours) array with every column adding up to 1, and all of them respect
the community's rules (docs/community.md, "Community rules on top of the law"): a minimum and a cap per member, a reserve for the
energy-poverty households; the optimal method can also bound each member's share of the year's generation
around its fixed share (fairness).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from community.config import Community, member_bounds
from community.scenarios import Scenarios

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

    An hour where nobody is expected to consume falls back to the fixed shares (the open tools use equal shares there;
    the fixed shares are equal unless the community agreed otherwise).
    """
    c = np.clip(np.nan_to_num(np.asarray(expected_consumption_kwh, float)), 0, None)
    total = c.sum(axis=0)
    beta = np.where(total > 0, c / np.where(total > 0, total, 1.0), rules.entitlement[:, None])
    return apply_rules(beta, rules)


def apply_rules(beta: np.ndarray, rules: SharingRules) -> np.ndarray:
    """Bring shares that add up to 1 within the rules, moving as little as the open tools' practice does.

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
    lo_c = lo if lo.ndim == 2 else lo[:, None]  # a floor per member, or per member and hour
    hi_c = hi if hi.ndim == 2 else hi[:, None]
    lo_sum, hi_sum = lo_c.sum(axis=0), hi_c.sum(axis=0)
    if (lo_sum > total + _TOL).any() or (hi_sum < total - _TOL).any():
        raise InfeasibleRules(
            f"{beta.shape[0]} members with minimums adding to {lo_sum.max():.6f} and caps adding to "
            f"{hi_sum.min():.6f} cannot share a total of {total.min():.6f}..{total.max():.6f}"
        )
    wish = np.clip(beta, 0, None) + 1e-9
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
        subject to a_i,h <= beta_i,h G_h,  0 <= a_i,h <= C_i,h   (A = min(C, beta G), made linear)
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


def stochastic_shares(
    scenarios: Scenarios,
    rules: SharingRules,
    *,
    reference_kwh: np.ndarray | None = None,
    fairness_generation_kwh: np.ndarray | None = None,
    block_hours: int = 168,
    solver: Literal["greedy", "highs"] = "greedy",
    progress: Callable[[str], None] | None = None,
) -> OptimalResult:
    """Coefficients that maximise the *expected* self-consumption over S past-hour scenarios (sample average).

    For each hour the same beta is settled against every scenario s (consumption c_i,s, generation g_s):

        maximise   (1/S) sum_s sum_i min(beta_i g_s, c_i,s)
        subject to sum_i beta_i = 1,  lower_i <= beta_i <= upper_i,  sum_{i poor} beta_i >= reserve,
                   (1 - tol) w_i sum_h G_h <= sum_h beta_i,h G_h <= (1 + tol) w_i sum_h G_h   (fairness)

    Each member's term f_i(beta) = (1/S) sum_s g_s min(beta, c_i,s / g_s) is concave and piecewise linear in
    its own beta, with a kink at every ratio r_i,s = c_i,s / g_s: the slope above beta is the generation of the
    scenarios in which the member would still use more. So instead of one min() per member and scenario
    (n x S rows per hour), beta_i = lower_i + sum_k d_i,k with one bounded variable per segment between kinks and
    the segment's slope as its profit; concavity makes the LP fill the segments in order. That leaves one
    equality (plus the reserve) per hour: a fractional knapsack HiGHS solves in milliseconds. With one scenario
    (the mean profile) it is the deterministic programme of `optimal_shares`.

    Without fairness the hours are independent and are solved in blocks of `block_hours` (a week by default),
    by default with the exact greedy of `_solve_hours_greedy` (HiGHS spends ~0.25 s on a day of 50 members x 24
    scenarios, the greedy ~1 ms; `solver="highs"` solves the same blocks with HiGHS, and the tests check that
    both reach the same optimum). Fairness couples the year, so all hours go into one HiGHS programme (G_h = `fairness_generation_kwh`, by default
    the scenarios' mean generation). Beta beyond a member's largest kink is worth nothing in every scenario;
    without fairness that leftover is spread in proportion to `reference_kwh` (default: the scenarios' mean
    consumption), where unforeseen demand is most likely, within the caps and keeping each group's total so
    the reserve still holds. With fairness it stays where the solver put it (moving it would change the yearly
    shares). Hours without generation in any scenario get the fixed shares.
    """
    import time

    c_all = np.clip(np.nan_to_num(np.asarray(scenarios.consumption_kwh, float)), 0, None)
    g_all = np.clip(np.nan_to_num(np.asarray(scenarios.generation_kwh, float)), 0, None)
    n, n_hours, n_s = c_all.shape
    if g_all.shape != (n_hours, n_s):
        raise ValueError(f"scenario generation has shape {g_all.shape}, expected ({n_hours}, {n_s})")
    if n != rules.n_members:
        raise ValueError(f"{n} members in the scenarios, {rules.n_members} in the rules")
    fair_g = (
        g_all.mean(axis=1)
        if fairness_generation_kwh is None
        else np.clip(np.nan_to_num(np.asarray(fairness_generation_kwh, float)), 0, None)
    )
    beta = fixed_shares(n_hours, rules)
    sun = np.flatnonzero((g_all.max(axis=1) > 1e-9) | (fair_g > 1e-9))
    t0 = time.perf_counter()
    if sun.size == 0:
        return OptimalResult(beta, 0.0, 0.0, 0, 0)
    coupled = rules.fairness_tolerance is not None
    if coupled:
        blocks = [sun]
    else:
        edges = np.flatnonzero(np.diff(sun // block_hours)) + 1
        blocks = np.split(sun, edges)
    total_kwh = 0.0
    n_vars = n_rows = 0
    for k, hours in enumerate(blocks):
        if progress and (k % 10 == 0 or coupled):
            progress(f"stochastic LP: block {k + 1}/{len(blocks)} ({n_s} scenarios)")
        if coupled or solver == "highs":
            b, value, nv, nr = _solve_block(
                c_all[:, hours], g_all[hours], fair_g[hours], float(fair_g.sum()), rules, coupled
            )
        else:
            b, value, nv, nr = _solve_hours_greedy(c_all[:, hours], g_all[hours], rules)
        beta[:, hours] = b
        total_kwh += value
        n_vars += nv
        n_rows += nr
    if not coupled:
        ref = c_all.mean(axis=2) if reference_kwh is None else np.asarray(reference_kwh, float)
        beta[:, sun] = _spread_leftover(beta[:, sun], c_all[:, sun], g_all[sun], ref[:, sun], rules)
    beta[:, sun] = np.clip(beta[:, sun], rules.lower[:, None], rules.upper[:, None])
    beta[:, sun] /= beta[:, sun].sum(axis=0)  # removes solver round-off (1e-12) before six-decimal rounding
    return OptimalResult(beta, total_kwh, time.perf_counter() - t0, n_vars, n_rows)


def _solve_hours_greedy(
    c: np.ndarray, g: np.ndarray, rules: SharingRules
) -> tuple[np.ndarray, float, int, int]:
    """The same programme as `_solve_block` for independent hours, solved exactly without a general LP solver.

    Per hour the LP is: take segments d_k in [0, len_k] with profit p_k, sum d = F (= 1 - sum lower) and at most
    K = F - (reserve - the energy-poverty minimums) on the other members' segments. The feasible set is a
    polymatroid base polytope over the laminar family {other members, everyone}, on which filling the segments
    greedily by decreasing profit, each as far as the caps allow, is optimal (Edmonds). Tied segments of the same
    group at the margin share the remaining room in proportion to their length, so a tie is never settled by
    member order. Vectorised over hours; tests check it against HiGHS on the same data.
    """
    n, hb, n_s = c.shape
    points, slopes = _kinks(c, g, rules)
    length = np.diff(points, axis=2)  # members x hours x (S+1)
    free = 1.0 - rules.lower.sum()
    poor = rules.poor
    need = max(0.0, rules.reserve - rules.lower[poor].sum()) if (rules.reserve > 0 and poor.any()) else 0.0
    other_cap = free - need
    m = n * (n_s + 1)
    ell = length.transpose(1, 0, 2).reshape(hb, m)  # hours x segments (member-major)
    prof = np.round(slopes.transpose(1, 0, 2).reshape(hb, m), 12)  # round-off must not break ties
    other = np.repeat(~poor, n_s + 1)[None, :].repeat(hb, axis=0)
    order = _order(prof, other)
    ell_s = np.take_along_axis(ell, order, axis=1)
    prof_s = np.take_along_axis(prof, order, axis=1)
    oth_s = np.take_along_axis(other, order, axis=1)
    cum_other = np.cumsum(ell_s * oth_s, axis=1)
    took_other = np.diff(np.minimum(cum_other, other_cap), axis=1, prepend=0.0)
    wish = np.where(oth_s, took_other, ell_s)
    x = np.diff(np.minimum(np.cumsum(wish, axis=1), free), axis=1, prepend=0.0)
    if (x.sum(axis=1) < free - 1e-9).any():
        raise InfeasibleRules("the energy-poverty reserve and the members' minimums/caps cannot all hold")
    # Spread each run of equal profit (same hour and group) in proportion to the segments' lengths.
    new_run = np.ones((hb, m), bool)
    new_run[:, 1:] = (prof_s[:, 1:] != prof_s[:, :-1]) | (oth_s[:, 1:] != oth_s[:, :-1])
    run = np.cumsum(new_run.ravel()) - 1
    run_x = np.bincount(run, weights=x.ravel())
    run_len = np.bincount(run, weights=ell_s.ravel())
    frac = np.where(run_len > 0, run_x / np.where(run_len > 0, run_len, 1.0), 0.0)
    x = (frac[run] * ell_s.ravel()).reshape(hb, m)
    value = (x * prof_s).sum()
    filled = np.empty_like(x)
    np.put_along_axis(filled, order, x, axis=1)
    beta = rules.lower[:, None] + filled.reshape(hb, n, n_s + 1).sum(axis=2).T
    base_kwh = np.minimum(rules.lower[:, None, None] * g[None], c).sum() / n_s
    return beta, float(base_kwh + value), int((ell > 1e-12).sum()), hb * (2 if need > 0 else 1)


def _order(profit: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per row: decreasing profit, and among equal profits the energy-poverty members' segments first."""
    key = np.stack([other.astype(float), -profit])  # lexsort sorts by the last key first
    return np.lexsort(key, axis=-1)


def _kinks(c: np.ndarray, g: np.ndarray, rules: SharingRules) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints (members x hours x S+2, from lower to upper) and segment slopes (x S+1) of each f_i."""
    n_s = g.shape[1]
    weight = np.broadcast_to(g[None] / n_s, c.shape)  # kWh per unit of beta, per scenario
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(g[None] > 0, c / np.where(g[None] > 0, g[None], 1.0), np.inf)
    order = np.argsort(ratio, axis=2)
    ratio = np.take_along_axis(ratio, order, axis=2)
    weight = np.take_along_axis(weight, order, axis=2)
    lo = np.broadcast_to(rules.lower[:, None, None], c.shape[:2] + (1,))
    hi = np.broadcast_to(rules.upper[:, None, None], c.shape[:2] + (1,))
    points = np.concatenate([lo, np.clip(ratio, lo, hi), hi], axis=2)
    tail = np.cumsum(weight[:, :, ::-1], axis=2)[:, :, ::-1]  # slope above kink k: scenarios k..S-1
    slopes = np.concatenate([tail, np.zeros(c.shape[:2] + (1,))], axis=2)
    return points, slopes


def _solve_block(
    c: np.ndarray,
    g: np.ndarray,
    fair_g: np.ndarray,
    fair_total_kwh: float,
    rules: SharingRules,
    coupled: bool,
) -> tuple[np.ndarray, float, int, int]:
    """One HiGHS LP over the hours of `c` (members x hours x S); returns beta, expected kWh, size.

    `fair_g` is the fairness generation of these hours and `fair_total_kwh` that of the whole period (the
    hours left out have none)."""
    n, hb, n_s = c.shape
    points, slopes = _kinks(c, g, rules)
    length = np.diff(points, axis=2)
    keep = length > 1e-12
    member, hour, _ = np.nonzero(keep)
    ub = length[keep]
    profit = slopes[keep]
    nv = ub.size
    free = 1.0 - rules.lower.sum()
    a_eq = sp.csr_matrix((np.ones(nv), (hour, np.arange(nv))), shape=(hb, nv))
    b_eq = np.full(hb, free)
    ub_rows: list[sp.csr_matrix] = []
    ub_rhs: list[np.ndarray] = []
    poor = rules.poor
    if rules.reserve > 0 and poor.any():
        need = rules.reserve - rules.lower[poor].sum()
        if need > 0:
            sel = np.flatnonzero(poor[member])
            ub_rows.append(sp.csr_matrix((-np.ones(sel.size), (hour[sel], sel)), shape=(hb, nv)))
            ub_rhs.append(np.full(hb, -need))
    if coupled and rules.fairness_tolerance is not None:
        # Yearly share of each member: sum_h G_h beta_i,h = lower_i sum_h G_h + sum_h G_h sum_k d_i,h,k.
        tol = rules.fairness_tolerance
        share = sp.csr_matrix((fair_g[hour], (member, np.arange(nv))), shape=(n, nv))
        base = rules.lower * float(fair_g.sum())
        ub_rows += [share, -share]
        ub_rhs += [
            (1 + tol) * rules.entitlement * fair_total_kwh - base,
            -((1 - tol) * rules.entitlement * fair_total_kwh - base),
        ]
    a_ub = sp.vstack(ub_rows, format="csr") if ub_rows else None
    b_ub = np.concatenate(ub_rhs) if ub_rhs else None
    res = linprog(
        -profit,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=np.column_stack([np.zeros(nv), ub]),
        method="highs",
    )
    if res.status != 0:
        raise InfeasibleRules(f"the stochastic programme has no solution with these rules: {res.message}")
    beta = np.repeat(rules.lower[:, None], hb, axis=1)
    np.add.at(beta, (member, hour), res.x)
    base_kwh = np.minimum(rules.lower[:, None, None] * g[None], c).sum() / n_s
    n_rows = hb + (a_ub.shape[0] if a_ub is not None else 0)
    return beta, base_kwh - float(res.fun), nv, n_rows


def _spread_leftover(
    beta: np.ndarray, c: np.ndarray, g: np.ndarray, reference_kwh: np.ndarray, rules: SharingRules
) -> np.ndarray:
    """Move beta that no scenario can use to where consumption is expected, without losing any of the optimum.

    Above its largest kink max_s c_i,s / g_s a member's beta has no value in any scenario, so each member keeps
    min(beta*, max(largest kink, lower)) as a floor (the optimum stands: nobody drops below a point where it
    still had value) and each group (energy-poverty members, the rest) re-shares its own total as
    clip(lambda x expected consumption, floor, cap): the reserve and the caps still hold.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(g[None] > 0, c / np.where(g[None] > 0, g[None], 1.0), 0.0)
    top = np.maximum(ratio.max(axis=2), rules.lower[:, None])
    floor = np.minimum(beta, top)
    out = beta.copy()
    poor = rules.poor
    groups = [poor, ~poor] if (rules.reserve > 0 and poor.any()) else [np.ones(rules.n_members, bool)]
    ref = np.clip(np.nan_to_num(reference_kwh), 0, None)
    for grp in groups:
        if not grp.any():
            continue
        total = beta[grp].sum(axis=0)
        out[grp] = _fit_to_total(
            ref[grp], floor[grp], np.repeat(rules.upper[grp, None], beta.shape[1], 1), total
        )
    return out


METHODS = ("fixed", "proportional", "optimal", "optimal-mean")


def shares_by_method(
    method: str,
    expected_consumption_kwh: np.ndarray,
    expected_generation_kwh: np.ndarray,
    rules: SharingRules,
    progress: Callable[[str], None] | None = None,
    scenarios: Scenarios | None = None,
) -> np.ndarray:
    """Dispatch on a method name (METHODS).

    `optimal` is the stochastic programme over `scenarios` (past hours like each target hour); without
    scenarios (e.g. a what-if on a period's actual data) the data itself is the one scenario. `optimal-mean` is
    the deterministic programme on the expected (mean-profile) data, kept for comparison.
    """
    if method == "fixed":
        return fixed_shares(expected_consumption_kwh.shape[1], rules)
    if method == "proportional":
        return proportional_shares(expected_consumption_kwh, rules)
    if method == "optimal":
        if scenarios is None:
            scenarios = Scenarios.single(
                np.clip(np.nan_to_num(expected_consumption_kwh), 0, None),
                np.clip(np.nan_to_num(expected_generation_kwh), 0, None),
            )
        return stochastic_shares(
            scenarios,
            rules,
            reference_kwh=expected_consumption_kwh,
            fairness_generation_kwh=expected_generation_kwh,
            progress=progress,
        ).beta
    if method == "optimal-mean":
        return optimal_shares(
            expected_consumption_kwh, expected_generation_kwh, rules, progress=progress
        ).beta
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
