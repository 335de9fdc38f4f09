"""OpenFeature evaluations through the published OFREP provider (PyPI), for tests/tests/ofrep.rs.

Usage: BASE=http://127.0.0.1:8080 TOKEN=secret python3 eval.py < cases.jsonl (tests/tests/ofrep.rs runs it)
Input line:  {"flag": "payments/timeout_ms", "type": "number", "default": 0, "context": {"targetingKey": "u1"}}
  type: string | boolean | object | number (-> integer if default is an int, else float) | integer | float
Output line: {"flag", "value", "variant", "reason", "errorCode", "errorMessage", "flagMetadata"}
"""

import json
import os
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

BASE = os.environ.get("BASE", "http://127.0.0.1:8080")
TOKEN = os.environ.get("TOKEN", "")

# openfeature-provider-ofrep 0.3.0: OFREPProvider(base_url, *, headers_factory=None, timeout=5.0)
# (no static `headers` option: headers come only from headers_factory() -> dict[str, str]).
provider = OFREPProvider(
    BASE,
    headers_factory=(lambda: {"Authorization": f"Bearer {TOKEN}"}) if TOKEN else None,
)
api.set_provider_and_wait(provider)
client = api.get_client("graycast-ofrep-probe")


def getter(kind, default):
    if kind == "number":
        is_int = isinstance(default, int) and not isinstance(default, bool)
        kind = "integer" if is_int else "float"
    return {
        "string": client.get_string_details,
        "boolean": client.get_boolean_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }[kind]


def to_context(ctx):
    ctx = dict(ctx or {})
    tk = ctx.pop("targetingKey", None)
    return EvaluationContext(targeting_key=tk, attributes=ctx)


for line in sys.stdin:
    if not line.strip():
        continue
    try:
        case = json.loads(line)
        d = getter(case["type"], case["default"])(
            case["flag"], case["default"], to_context(case.get("context"))
        )
        out = {
            "flag": case["flag"],
            "value": d.value,
            "variant": d.variant,
            "reason": str(d.reason) if d.reason is not None else None,
            "errorCode": str(d.error_code) if d.error_code is not None else None,
            "errorMessage": d.error_message,
            "flagMetadata": dict(d.flag_metadata or {}),
        }
    except Exception as e:  # a malformed input line, not an evaluation error
        out = {"input": line.rstrip("\n"), "probeError": repr(e)}
    print(json.dumps(out), flush=True)

api.shutdown()
