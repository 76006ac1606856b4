"""Run a stack service so that it cannot outlive the stack: `python -m energytwin._child_guard [--stay] PID -- ARGV`.

On Linux the kernel sends SIGTERM to a process whose parent dies once it has asked for it with
prctl(PR_SET_PDEATHSIG), which survives exec; so the guard asks, checks the stack is still its parent (it may have
died before the request took effect), and execs the service in its own place (same pid, same process group).
Without this a `kill -9` of `energytwin up` would leave every service running, holding the ports. Elsewhere the
guard only execs; the stack's lock file then names what is left (energytwin/stack.py).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    stay = bool(argv) and argv[0] == "--stay"
    argv = argv[1:] if stay else argv
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m energytwin._child_guard [--stay] PARENT_PID -- COMMAND [ARG...]")
    parent, command = int(argv[0]), argv[2:]
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        except (OSError, AttributeError):
            pass  # no prctl: the lock file still names a left-over service
        if os.getppid() != parent:  # the stack died before the request took effect
            raise SystemExit(0)
    if not stay:
        os.execv(command[0], command)
    # --stay: for a program that changes its user (Mosquitto run as root drops to `mosquitto`), which clears the
    # request; the guard stays its parent and passes SIGTERM/SIGINT/SIGHUP on, whoever sends them.
    child = subprocess.Popen(command)

    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    raise SystemExit(child.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
