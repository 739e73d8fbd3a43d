"""Permission-rule evaluation benchmark: pki.dataplane.rules.RuleSet.decide with 10,000 rules.

    .venv/bin/python scripts/bench_rules.py [--rules 10000] [--n 100000]

In process, one thread, no store.  The rules: per-username rules (three per username), per-client-id
rules, and a hundred rules for everyone, half with ${clientid}/${username} placeholders, some with
IP and QoS conditions.  The checks: publishes and subscribes by known and unknown clients, hits and
misses, drawn in advance.  The baseline, measured in the same run, is a loop of bare dict lookups
with the same request tuples: the figure to read is the ratio, which does not depend on the machine.
The target of the broker data plane is 50,000 checks/s.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pki.dataplane.rules import Rule, RuleSet  # noqa: E402

TARGET = 50_000


def build(count: int, rng: random.Random) -> list[Rule]:
    rules = []
    everyone = min(100, count // 10)
    for i in range(everyone):
        topic = f"shared/{i}/${{clientid}}/#" if i % 2 else f"broadcast/{i}/+"
        rules.append(Rule(id=f"all-{i:05d}", effect="allow" if i % 7 else "deny", action="all", topic=topic,
                          who="all", priority=rng.randint(0, 100), qos=frozenset({0, 1}) if i % 5 == 0 else None))
    per_client = (count - everyone) // 4
    for i in range(per_client):
        rules.append(Rule(id=f"cid-{i:05d}", effect="allow", action="publish", topic=f"devices/dev{i}/up/#",
                          who="client_id", who_value=f"dev{i}", priority=rng.randint(0, 100),
                          ip="10.0.0.0/8" if i % 3 == 0 else None))
    users = (count - len(rules)) // 3
    for i in range(users):
        name = f"DeviceCredential|AK{i:05d}|default"
        rules.append(Rule(id=f"usr-{i:05d}-a", effect="allow", action="publish",
                          topic="telemetry/${username}/+", who="username", who_value=name, priority=10))
        rules.append(Rule(id=f"usr-{i:05d}-b", effect="deny", action="publish", topic=f"telemetry/{i}/secret",
                          who="username", who_value=name, priority=5))
        rules.append(Rule(id=f"usr-{i:05d}-c", effect="allow", action="subscribe", topic=f"cmd/{i}/#",
                          who="username", who_value=name, priority=20))
    while len(rules) < count:
        rules.append(Rule(id=f"pad-{len(rules):05d}", effect="deny", action="publish", topic=f"pad/{len(rules)}",
                          who="username", who_value=f"pad{len(rules)}"))
    return rules


def requests(n: int, users: int, clients: int, rng: random.Random) -> list[tuple]:
    out = []
    for _ in range(n):
        u, c = rng.randrange(users + 50), rng.randrange(clients + 50)
        username, client_id = f"DeviceCredential|AK{u:05d}|default", f"dev{c}"
        kind = rng.randrange(5)
        if kind == 0:
            out.append((username, client_id, "10.1.2.3", "publish", f"telemetry/{username}/temp", 1, False))
        elif kind == 1:
            out.append((username, client_id, "192.0.2.7", "publish", f"devices/dev{c}/up/x", 0, False))
        elif kind == 2:
            out.append((username, client_id, None, "subscribe", f"cmd/{u}/+", 1, None))
        elif kind == 3:
            out.append((username, client_id, "10.9.9.9", "publish", f"shared/{rng.randrange(100)}/{client_id}/a", 0, True))
        else:
            out.append((username, client_id, "10.0.0.1", "publish", "no/rule/here", 0, False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(12)
    rules = build(args.rules, rng)
    started = time.perf_counter()
    rs = RuleSet(rules)
    compiled = time.perf_counter() - started
    users = sum(1 for r in rules if r.id.endswith("-a"))
    clients = sum(1 for r in rules if r.who == "client_id")
    work = requests(args.n, users, clients, rng)
    table = {(r.who_value, r.topic): r.id for r in rules}

    start = time.perf_counter()
    for username, _c, _ip, _a, topic, _q, _r in work:
        table.get((username, topic))
    baseline = args.n / (time.perf_counter() - start)

    decide = rs.decide
    start = time.perf_counter()
    allowed = 0
    for req in work:
        allowed += decide(*req).allowed
    rate = args.n / (time.perf_counter() - start)

    print(f"python {platform.python_version()}, {len(rs)} rules compiled in {compiled * 1000:.0f} ms, "
          f"{args.n} checks ({allowed} allowed)")
    print(f"baseline  dict lookup          {baseline:>12,.0f} /s  1.00")
    print(f"RuleSet.decide, {len(rs)} rules {rate:>12,.0f} /s  {rate / baseline:.3f} of the baseline  "
          f"(target {TARGET:,}/s: {'met' if rate >= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
