"""The project's own models of households and PV arrays, below the apps that share them.

`simulation.households` simulates a community's hourly consumption and shared generation (the demo's and the
benchmarks' data, the fleet simulation's homes, the forecasts' held-out load year); `simulation.pv` is the
clear-sky output of an array (pvlib), which the community's expected production and the forecasts both scale.
Nothing here reads the twin or any service: it is data the apps above start from.
"""
