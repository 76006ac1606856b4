"""The bottom layer: facts and helpers every part shares, importing nothing from the project.

`kernel.ports` is the one table of production ports; `kernel.yaml_lines` loads YAML with line numbers so every
configuration file (inventory, community file) reports errors at the line they are on. Layers above:
datamodels -> fiware_client -> services, bridges, apps -> the CLI (docs/architecture.md).
"""
