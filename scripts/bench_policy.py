"""Policy-evaluation benchmark: a 200-star resource pattern against an exact match, in one run.

    .venv/bin/python scripts/bench_policy.py [--n 20000] [--text-chars 3000]

In process, one thread, no store: ``pki.services.policy.evaluate`` on one
parsed policy per case.
(a) baseline: an exact Resource (``acs:mq:local:default:prod-eu``), a hit;
(1) a 1,000-character Resource pattern with 200 stars, a hit on a resource of
    --text-chars characters;
(2) the same pattern, a miss on the same resource less its last character
    (the case a backtracking matcher takes exponential time on);
(3) the same pattern, a miss in the middle: a resource as long, with no "xxx".
Each figure is printed with its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pki.services.policy import evaluate, parse_policy  # noqa: E402

ACTION = "mq:GetCaCertificate"


def _policy(resource: str):
    return [parse_policy({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ACTION, "Resource": resource}]}, name="Bench")]


def _rate(policies, resource: str, n: int, *, allowed: bool) -> float:
    assert evaluate(policies, action=ACTION, resource=resource).allowed is allowed
    start = time.perf_counter()
    for _ in range(n):
        evaluate(policies, action=ACTION, resource=resource)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluations per case")
    parser.add_argument("--text-chars", type=int, default=3000, help="length of the resource matched")
    args = parser.parse_args()

    body = "acs:mq:" + "*xxx" * 200
    pattern = body + "z" * (1000 - len(body))
    tail = pattern[len(body):]
    hit = "acs:mq:" + "x" * max(args.text_chars - len("acs:mq:") - len(tail), 600) + tail
    miss = hit[:-1]
    middle = "acs:mq:" + ("xxy" * len(hit))[:len(hit) - len("acs:mq:") - len(tail)] + tail

    exact = "acs:mq:local:default:prod-eu"
    print(f"python {platform.python_version()} on {platform.machine()}, one thread, n={args.n}, "
          f"pattern {len(pattern)} chars / {pattern.count('*')} stars, resource {len(hit)} chars")
    base = _rate(_policy(exact), exact, args.n, allowed=True)
    print(f"  {'(a) baseline: exact Resource, hit':<44} {base:>10,.0f} calls/s")
    starry = _policy(pattern)
    for label, resource, allowed in (("(1) 200-star pattern, hit", hit, True),
                                     ("(2) 200-star pattern, miss at the end", miss, False),
                                     ("(3) 200-star pattern, miss in the middle", middle, False)):
        rate = _rate(starry, resource, args.n, allowed=allowed)
        print(f"  {label:<44} {rate:>10,.0f} calls/s   {rate / base:6.3f} x baseline")


if __name__ == "__main__":
    main()
