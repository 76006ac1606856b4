"""Grafana dashboards and the QuantumLeap table layout they read, as code (docs/dashboards.md).

`energytwin dashboards build` writes the committed JSON, PNG layouts and the CrateDB init statements from the
definitions here; tests check the committed files are up to date and run every panel's SQL against PostgreSQL.
"""
