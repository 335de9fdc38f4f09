// OpenFeature evaluations through the published OFREP provider (npm), for tests/tests/ofrep.rs.
// Usage: BASE=http://127.0.0.1:8080 TOKEN=secret node eval.mjs < cases.jsonl (tests/tests/ofrep.rs runs it)
// Each input line:  {"flag": "payments/timeout_ms", "type": "number", "default": 0, "context": {"targetingKey": "u1"}}
// Each output line: {"flag", "value", "variant", "reason", "errorCode", "errorMessage", "flagMetadata"}
import { createInterface } from 'node:readline';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const BASE = process.env.BASE ?? 'http://127.0.0.1:8080';
const TOKEN = process.env.TOKEN ?? '';

// Option names from node_modules/@openfeature/ofrep-core/src/lib/provider/ofrep-provider-options.d.ts:
// { baseUrl, headers?, headersFactory?, fetchImplementation? }.  A list of [name, value] pairs
// is accepted by this version (0.1.x core) and by the 2.x core (which takes pairs only).
const headers = TOKEN ? [['Authorization', `Bearer ${TOKEN}`]] : [];
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: BASE, headers }));
const client = OpenFeature.getClient('graycast-ofrep-probe');

const getters = {
  string: (f, d, c) => client.getStringDetails(f, d, c),
  number: (f, d, c) => client.getNumberDetails(f, d, c),
  integer: (f, d, c) => client.getNumberDetails(f, d, c), // aliases, so one case file serves eval.py too
  float: (f, d, c) => client.getNumberDetails(f, d, c),
  boolean: (f, d, c) => client.getBooleanDetails(f, d, c),
  object: (f, d, c) => client.getObjectDetails(f, d, c),
};

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let out;
  try {
    const { flag, type, default: dflt, context = {} } = JSON.parse(line);
    const get = getters[type];
    if (!get) throw new Error(`unknown type ${JSON.stringify(type)}`);
    const d = await get(flag, dflt, context);
    out = {
      flag,
      value: d.value,
      variant: d.variant ?? null,
      reason: d.reason ?? null,
      errorCode: d.errorCode ?? null,
      errorMessage: d.errorMessage ?? null,
      flagMetadata: d.flagMetadata ?? {},
    };
  } catch (e) {
    out = { input: line, probeError: String(e) };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
await OpenFeature.close();
