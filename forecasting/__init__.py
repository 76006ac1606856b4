"""24-hour forecasts of PV generation, household load and the day-ahead price, scored against naive baselines.

    from forecasting.pv import PvSite, pv_walk_forward
    from forecasting.scoring import score_all

Every forecast is issued at a day boundary (00:00 of the site's standard time) for the 24 hours that follow, from
history strictly before the issue time. docs/forecasts.md gives the method and the measured skill.
"""
