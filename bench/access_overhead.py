"""Overhead of the access layer (access/, the PEP) on the broker's HTTP ingest and query throughput.

One embedded broker, one PEP in front of it, both on 127.0.0.1. The same workload runs straight at the broker
(the baseline) and through the PEP, interleaved in rounds so machine noise hits both alike:
- ingest: batch upserts of `--batch` meter measurements from `--clients` concurrent clients (admin token: the
  PEP verifies the JWT, checks the policy and forwards);
- query: GET /entities?type=ThreePhaseAcMeasurement as a member (the PEP also filters the body to one meter).
Figures are ratios of throughput through the PEP to the baseline in the same run (1.0 = no overhead). The
machine is shared with other work, so read them as that run's ratios, not absolutes.

Ingest also runs through variants of the PEP in the same rounds, each its own process in front of the same
broker, so each change is measured against what it replaced: `baseline` (access/ as of BASELINE_COMMIT, read
from git), `h11-asyncio` (today's code forced onto uvicorn's pure-Python parser and asyncio's loop) and
`httptools-uvloop` (today's code on the C ones; needs httptools and uvloop importable: installed, or a directory
holding them given as --fast-site), and `tcp-relay`, the floor: bench/_access_relay.py copying bytes with no HTTP
at all (on uvloop when importable), i.e. what the extra hop alone costs. The micro figures (token verification cached or not, path classification
before and after) are timed in this process.

    python bench/access_overhead.py            # 8 rounds
    python bench/access_overhead.py --quick    # the smoke run (no variants)
    python bench/access_overhead.py --stack    # the whole embedded stack, access on against off (the issue's figure)
Writes bench/results/access_overhead.json (`--stack`: access_overhead_stack.json).

`--stack` is the issue's own figure: the stack's ingest of the meters' MQTT messages with access control on
(per-device MQTT logins and ACLs, the PEP in front of the analytics and the page, the page's login and filtered
viewers) against off, two stacks side by side, rounds interleaved (bench/_access_stack.py says what runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from access._tokens import LocalIssuer
from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import measurement_id

RESULTS = REPO / "bench" / "results"
# The PEP before the 2026-12-07 optimisation (uvicorn auto = h11/asyncio here, wait_for per upstream exchange,
# routes scanned across all methods): the baseline the variants are measured against.
BASELINE_COMMIT = "2ec4bd5"
HEADERS = {"Content-Type": "application/json", "Link": link_header(ENERGY_CONTEXT)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, url: str, probe: str = "/version", timeout_s: float = 60) -> None:
    """Until `url` answers (any status: the PEP answers 401 to a probe without token, or 502 before its
    upstream is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url + probe, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{proc.args} did not answer within {timeout_s:.0f} s")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> dict:
    """What else ran: load averages and the number of other Python processes (the machine is shared)."""
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    others = subprocess.run(["pgrep", "-c", "python"], check=False, capture_output=True, text=True).stdout.strip()
    return {"loadavg_1_5_15": [float(x) for x in load], "python_processes": int(others or 0)}


def _baseline_tree(commit: str, into: Path) -> Path:
    """access/ as of `commit`, extracted under `into` (run with cwd there: `-m access` finds it first)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "access"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _importable(module: str, site: Path | None) -> bool:
    if importlib.util.find_spec(module) is not None:
        return True
    return site is not None and any(site.glob(f"{module}/__init__.py"))


def _micro(issuer: LocalIssuer) -> dict:
    """Per-call cost (µs) of token verification uncached (the full ES256 check) and cached, and of the path
    classification before (the baseline's loop over every route) and after (precompiled per method)."""
    from access import _policy

    verifier = issuer.verifier()
    tokens = [issuer.token(f"user-{i}", "admin") for i in range(200)]
    start = time.perf_counter()
    for token in tokens:
        verifier._verify(token)
    uncached = (time.perf_counter() - start) / len(tokens)
    verifier.verify(tokens[0])
    start = time.perf_counter()
    for _ in range(20_000):
        verifier.verify(tokens[0])
    cached = (time.perf_counter() - start) / 20_000

    old_routes = [(methods, re.compile(pattern), action) for methods, pattern, action in _policy._ROUTES]

    def old_classify(method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for methods, pattern, action in old_routes:  # the baseline's loop, as it was
            if method in methods.split():
                match = pattern.match(path)
                if match:
                    return action, {k: v for k, v in match.groupdict().items() if v}
        return None

    paths = [("POST", "/ngsi-ld/v1/entityOperations/upsert"), ("GET", "/ngsi-ld/v1/entities"),
             ("GET", "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"),
             ("PATCH", "/ngsi-ld/v1/entities/urn:ngsi-ld:Device:meter-001/attrs")]
    timings = {}
    for name, func in (("old", old_classify), ("new", _policy.classify)):
        assert all(func(m, p) == _policy.classify(m, p) for m, p in paths)
        start = time.perf_counter()
        for _ in range(5_000):
            for method, path in paths:
                func(method, path)
        timings[name] = (time.perf_counter() - start) / (5_000 * len(paths))
    return {"verify_uncached_us": round(1e6 * uncached, 1), "verify_cached_us": round(1e6 * cached, 2),
            "classify_before_us": round(1e6 * timings["old"], 2),
            "classify_after_us": round(1e6 * timings["new"], 2)}


def _batch(round_no: int, client: int, req: int, batch: int, meters: int) -> list[dict]:
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_790_000_000 + round_no * 10_000 + req)) + "Z"
    return [{"id": measurement_id(f"meter-{(client * batch + i) % meters:04d}"), "type": "ThreePhaseAcMeasurement",
             "activePower": {"type": "Property", "value": {"L1": 1.0 + i, "L2": 2.0, "L3": 3.0}, "observedAt": at}}
            for i in range(batch)]


def _run(url: str, token: str | None, kind: str, round_no: int, clients: int, requests: int, batch: int,
         meters: int) -> float:
    """Items per second (ingest: entities; query: requests) with `clients` concurrent clients."""
    headers = dict(HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def work(client: int) -> None:
        with httpx.Client(headers=headers, timeout=30) as http:
            for req in range(requests):
                if kind == "ingest":
                    r = http.post(url + "/ngsi-ld/v1/entityOperations/upsert",
                                  content=json.dumps(_batch(round_no, client, req, batch, meters)))
                else:
                    r = http.get(url + "/ngsi-ld/v1/entities", params={"type": "ThreePhaseAcMeasurement",
                                                                        "limit": "100"})
                if r.status_code >= 300:
                    raise RuntimeError(f"{kind} {url}: {r.status_code} {r.text[:200]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    elapsed = time.perf_counter() - start
    return clients * requests * (batch if kind == "ingest" else 1) / elapsed


def _server_of(pid: int) -> str:
    """Which HTTP parser / loop the default PEP process runs on (from the modules it mapped)."""
    maps = Path(f"/proc/{pid}/maps").read_text(errors="replace") if Path(f"/proc/{pid}/maps").exists() else ""
    return f"{'httptools' if 'httptools' in maps else 'h11'}/{'uvloop' if 'uvloop' in maps else 'asyncio'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (smoke test, a few seconds)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per client per round")
    parser.add_argument("--batch", type=int, default=50, help="entities per upsert")
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--fast-site", type=Path, help="A directory holding httptools and uvloop, put on the "
                                                       "httptools-uvloop variant's PYTHONPATH only")
    parser.add_argument("--no-variants", action="store_true", help="Only direct and the PEP as `access serve` runs")
    stack = parser.add_argument_group("--stack: the embedded stack's MQTT ingest, access control on against off")
    stack.add_argument("--stack", action="store_true", help="run this comparison instead of the HTTP one")
    stack.add_argument("--stack-rounds", type=int, default=6, help="interleaved on/off rounds (default 6)")
    stack.add_argument("--stack-meters", type=int, default=200, help="meters, one MQTT connection each (200)")
    stack.add_argument("--stack-rate", type=float, default=1.0, help="Hz per meter in the steady phase (1)")
    stack.add_argument("--stack-seconds", type=float, default=15.0, help="steady phase length (15 s)")
    stack.add_argument("--stack-burst", type=int, default=2000, help="messages of the burst phase (2000)")
    args = parser.parse_args()
    if args.stack:
        if args.quick:
            parser.error("--stack has no --quick form (two whole stacks: minutes); the smoke run is --quick alone")
        from bench._access_stack import run as run_stack

        doc = run_stack(args.stack_rounds, args.stack_meters, args.stack_rate, args.stack_seconds,
                        args.stack_burst, _machine)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "access_overhead_stack.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        shown = ("date", "machine_before", "machine_after", "summary", "idle_cpu_pct", "idle_cpu_pct_stack",
                 "ratios_on_to_off", "pep_processes_share_of_stack_cpu", "differing_processes_delta_ms_per_msg",
                 "differing_processes_delta_share", "member_viewer_foreign_devices", "viewers")
        print(json.dumps({k: doc[k] for k in shown}, indent=2))
        return
    if args.quick:
        args.rounds, args.requests, args.clients, args.no_variants = 3, 6, 2, True
    started = time.perf_counter()
    machine_before = _machine()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        bport, pport = _free_port(), _free_port()
        broker_url, pep_url = f"http://127.0.0.1:{bport}", f"http://127.0.0.1:{pport}"
        issuer = LocalIssuer(data_dir)
        issuer.verifier()  # the key exists before the PEP reads the JWKS
        # Both start at once (the PEP does not need its upstream until the first request).
        broker = _launch(["-m", "twin_service.broker", "--host", "127.0.0.1", "--port", str(bport),
                          "--data-dir", str(data_dir / "broker")])
        pep = _launch(["-m", "access", "serve", "--upstream", broker_url, "--port", str(pport),
                       "--data-dir", str(data_dir)])
        admin = issuer.token("bench", "admin")
        member = issuer.token("bench-member", "member", devices=["meter-0001"])
        # Ingest-only variants of the PEP, each in front of the same broker: name -> (process, url).
        variants: dict[str, tuple[subprocess.Popen, str]] = {}
        skipped: dict[str, str] = {}
        if not args.no_variants:
            specs = [("baseline", []), ("h11-asyncio", ["--http", "h11", "--loop", "asyncio"])]
            fast = _importable("httptools", args.fast_site) and _importable("uvloop", args.fast_site)
            if fast:
                specs.append(("httptools-uvloop", ["--http", "httptools", "--loop", "uvloop"]))
            else:
                skipped["httptools-uvloop"] = "httptools/uvloop not importable (pip install httptools uvloop)"
            specs.append(("tcp-relay", ["--loop", "uvloop" if _importable("uvloop", args.fast_site) else "asyncio"]))
            for name, extra in specs:
                port = _free_port()
                env = dict(os.environ)
                cwd = REPO
                if name == "baseline":
                    cwd = _baseline_tree(BASELINE_COMMIT, data_dir / "baseline")
                    env["PYTHONPATH"] = str(REPO)
                elif args.fast_site and name in ("httptools-uvloop", "tcp-relay"):
                    env["PYTHONPATH"] = f"{args.fast_site}{os.pathsep}{env.get('PYTHONPATH', '')}"
                argv = (["-m", "access", "serve", "--data-dir", str(data_dir)] if name != "tcp-relay"
                        else [str(REPO / "bench" / "_access_relay.py")])
                proc = subprocess.Popen([sys.executable, *argv, "--upstream", broker_url, "--port", str(port),
                                         *extra], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
                variants[name] = (proc, f"http://127.0.0.1:{port}")
        try:
            _wait(broker, broker_url)
            _wait(pep, pep_url)
            for proc, url in variants.values():
                _wait(proc, url)
            pep_server = _server_of(pep.pid)
            rates: dict[str, list[float]] = {k: [] for k in ("ingest_direct", "ingest_pep", "query_direct",
                                                                "query_pep")}
            # CPU per item of the broker and the PEP: the noise-robust figure. Other work on the machine
            # changes how long a run takes, hardly how much CPU the broker and the PEP spend per entity.
            cpu: dict[str, list[float]] = {k: [] for k in ("ingest_direct_broker", "ingest_pep_broker",
                                                           "ingest_pep_pep", "query_direct_broker",
                                                           "query_pep_broker", "query_pep_pep")}

            def measured(kind: str, name: str, url: str, token: str | None, round_no: int) -> None:
                before = _cpu_s(broker.pid), _cpu_s(pep.pid)
                rate = _run(url, token, kind, round_no, args.clients, args.requests, args.batch, args.meters)
                items = args.clients * args.requests * (args.batch if kind == "ingest" else 1)
                rates[f"{kind}_{name}"].append(rate)
                cpu[f"{kind}_{name}_broker"].append((_cpu_s(broker.pid) - before[0]) / items)
                if name == "pep":
                    cpu[f"{kind}_pep_pep"].append((_cpu_s(pep.pid) - before[1]) / items)

            # variant -> [PEP CPU s, broker CPU s, entities, seconds]
            variant_cpu: dict[str, list[float]] = {name: [0.0, 0.0, 0, 0.0] for name in variants}

            def variant_round(name: str, round_no: int) -> None:
                proc, url = variants[name]
                before = _cpu_s(proc.pid), _cpu_s(broker.pid), time.perf_counter()
                _run(url, admin, "ingest", round_no, args.clients, args.requests, args.batch, args.meters)
                acc = variant_cpu[name]
                acc[0] += _cpu_s(proc.pid) - before[0]
                acc[1] += _cpu_s(broker.pid) - before[1]
                acc[2] += args.clients * args.requests * args.batch
                acc[3] += time.perf_counter() - before[2]

            _run(broker_url, None, "ingest", 0, args.clients, 2, args.batch, args.meters)  # warm-up
            for rnd in range(1, args.rounds + 1):
                order = [("direct", broker_url, None), ("pep", pep_url, admin)]
                if rnd % 2:
                    order.reverse()
                for name, url, token in order:
                    measured("ingest", name, url, token, rnd * 2 + (name == "pep"))
                names = list(variants)
                for i, name in enumerate(names[rnd % len(names):] + names[:rnd % len(names)] if names else []):
                    variant_round(name, 1000 + rnd * 10 + i)
                for name, url, token in order:
                    measured("query", name, url, member if token else None, rnd)
            micro = _micro(issuer)
        finally:
            for proc in (pep, broker, *(p for p, _ in variants.values())):
                proc.terminate()
                proc.wait(timeout=10)

    med = {k: statistics.median(v) for k, v in rates.items()}
    per_round = {kind: [round(p / d, 3) for p, d in zip(rates[f"{kind}_pep"], rates[f"{kind}_direct"], strict=True)]
                 for kind in ("ingest", "query")}
    total = {k: sum(v) for k, v in cpu.items()}

    def cpu_ratio(kind: str) -> float:
        """Throughput ratio if the broker and the PEP had the CPU to themselves: broker CPU per item direct
        over broker + PEP CPU per item through the PEP."""
        return total[f"{kind}_direct_broker"] / (total[f"{kind}_pep_broker"] + total[f"{kind}_pep_pep"])

    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick, "rounds": args.rounds, "clients": args.clients, "requests": args.requests,
        "batch": args.batch, "seconds": round(time.perf_counter() - started, 1),
        "machine_before": machine_before, "machine_after": _machine(),
        "ingest_ratio_per_round": per_round["ingest"], "query_ratio_per_round": per_round["query"],
        "ingest_entities_per_s": {"direct": round(med["ingest_direct"], 1), "pep": round(med["ingest_pep"], 1)},
        "query_requests_per_s": {"direct": round(med["query_direct"], 1), "pep": round(med["query_pep"], 1)},
        "ingest_ratio_pep_to_direct": round(med["ingest_pep"] / med["ingest_direct"], 3),
        "query_ratio_pep_to_direct": round(med["query_pep"] / med["query_direct"], 3),
        "cpu_us_per_item": {k: round(1e6 * v / len(cpu[k]), 1) for k, v in total.items()},
        "ingest_cpu_ratio": round(cpu_ratio("ingest"), 3),
        "query_cpu_ratio": round(cpu_ratio("query"), 3),
        "pep_server": pep_server,
        "variants": {name: {"pep_cpu_us_per_entity": round(1e6 * acc[0] / acc[2], 2),
                            "broker_cpu_us_per_entity": round(1e6 * acc[1] / acc[2], 1),
                            "pep_share_of_broker_cpu": round(acc[0] / acc[1], 4),
                            "entities_per_s": round(acc[2] / acc[3], 1)}
                     for name, acc in variant_cpu.items() if acc[2]},
        "variants_skipped": skipped,
        "baseline_commit": BASELINE_COMMIT,
        "micro": micro,
        "note": "throughput: medians over interleaved rounds on a shared machine (noisy); cpu ratio: the broker's "
                "CPU per item straight over broker + PEP CPU per item through the PEP (what the throughput "
                "ratio is when both are CPU bound); the query through the PEP is a member's (its body filtered "
                "to one meter), the direct one returns every meter",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "access_overhead.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
