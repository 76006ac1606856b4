"""`python -m twin_service.web --broker-url … --port …`: the live twin page (what the embedded stack runs)."""

from .commands import web

if __name__ == "__main__":
    web.main(prog_name="python -m twin_service.web")
