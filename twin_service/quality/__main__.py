"""`python -m twin_service.quality --broker-url … --tenant …`: the analytics service (what the stack runs)."""

from .commands import run

if __name__ == "__main__":
    run.main(prog_name="python -m twin_service.quality")
