"""Overhead of the access layer (access/, the PEP) on the broker's HTTP ingest and query throughput.

One embedded broker, one PEP in front of it, both on 127.0.0.1. The same workload runs straight at the broker
(the baseline) and through the PEP, interleaved in rounds so machine noise hits both alike:
- ingest: batch upserts of `--batch` meter measurements from `--clients` concurrent clients (admin token: the
  PEP verifies the JWT, checks the policy and forwards);
- query: GET /entities?type=ThreePhaseAcMeasurement as a member (the PEP also filters the body to one meter).
Figures are ratios of throughput through the PEP to the baseline in the same run (1.0 = no overhead). The
machine is shared with other work, so read them as that run's ratios, not absolutes.

    python bench/access_overhead.py            # 8 rounds
    python bench/access_overhead.py --quick    # the smoke run tests/bench uses
Writes bench/results/access_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (smoke test, a few seconds)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per client per round")
    parser.add_argument("--batch", type=int, default=50, help="entities per upsert")
    parser.add_argument("--meters", type=int, default=200)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.clients = 3, 6, 2
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
        try:
            _wait(broker, broker_url)
            _wait(pep, pep_url)
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

            _run(broker_url, None, "ingest", 0, args.clients, 2, args.batch, args.meters)  # warm-up
            for rnd in range(1, args.rounds + 1):
                order = [("direct", broker_url, None), ("pep", pep_url, admin)]
                if rnd % 2:
                    order.reverse()
                for name, url, token in order:
                    measured("ingest", name, url, token, rnd * 2 + (name == "pep"))
                for name, url, token in order:
                    measured("query", name, url, member if token else None, rnd)
        finally:
            for proc in (pep, broker):
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
