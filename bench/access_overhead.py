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


def _start(argv: list[str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv} exited with {proc.returncode}")
        try:
            httpx.get(url + "/version", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{argv} did not answer within 30 s")


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
    parser.add_argument("--quick", action="store_true", help="2 short rounds (smoke test)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per client per round")
    parser.add_argument("--batch", type=int, default=50, help="entities per upsert")
    parser.add_argument("--meters", type=int, default=200)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.clients = 2, 5, 2

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        bport, pport = _free_port(), _free_port()
        broker_url, pep_url = f"http://127.0.0.1:{bport}", f"http://127.0.0.1:{pport}"
        broker = _start(["-m", "twin_service.broker", "--host", "127.0.0.1", "--port", str(bport),
                         "--data-dir", str(data_dir / "broker")], broker_url)
        issuer = LocalIssuer(data_dir)
        issuer.verifier()
        pep = _start(["-m", "access", "serve", "--upstream", broker_url, "--port", str(pport),
                      "--data-dir", str(data_dir)], pep_url)
        admin = issuer.token("bench", "admin")
        member = issuer.token("bench-member", "member", devices=["meter-0001"])
        try:
            rates: dict[str, list[float]] = {k: [] for k in ("ingest_direct", "ingest_pep", "query_direct",
                                                                "query_pep")}
            _run(broker_url, None, "ingest", 0, args.clients, 2, args.batch, args.meters)  # warm-up
            for rnd in range(1, args.rounds + 1):
                order = [("direct", broker_url, None), ("pep", pep_url, admin)]
                if rnd % 2:
                    order.reverse()
                for name, url, token in order:
                    rates[f"ingest_{name}"].append(_run(url, token, "ingest", rnd * 2 + (name == "pep"),
                                                        args.clients, args.requests, args.batch, args.meters))
                for name, url, token in order:
                    rates[f"query_{name}"].append(_run(url, member if token else None, "query", rnd,
                                                       args.clients, args.requests, args.batch, args.meters))
        finally:
            for proc in (pep, broker):
                proc.terminate()
                proc.wait(timeout=10)

    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "quick": args.quick, "rounds": args.rounds, "clients": args.clients, "requests": args.requests,
        "batch": args.batch,
        "ingest_entities_per_s": {"direct": round(med["ingest_direct"], 1), "pep": round(med["ingest_pep"], 1)},
        "query_requests_per_s": {"direct": round(med["query_direct"], 1), "pep": round(med["query_pep"], 1)},
        "ingest_ratio_pep_to_direct": round(med["ingest_pep"] / med["ingest_direct"], 3),
        "query_ratio_pep_to_direct": round(med["query_pep"] / med["query_direct"], 3),
        "note": "medians over interleaved rounds on a shared machine; the query through the PEP is a member's "
                "(its body filtered to one meter), the direct one returns every meter",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "access_overhead.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
