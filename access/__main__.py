"""`python -m access serve ...`: the PEP as its own process (what the stack and the tests start)."""

from access.commands import access

access(prog_name="python -m access")
