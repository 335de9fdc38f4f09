// Compiled (never run) by `npm run types`: the declarations in graycast.d.ts describe the
// API as the README uses it, and refuse what the API does not take.
import { createClient, evaluateGray, bucket, GraycastError, type Client, type ChangeEvent, type Status } from '@graycast/client';

const client: Client = createClient({
  url: 'https://config.example.com',
  token: 'a read token',
  namespaces: ['payments'],
  bootstrap: { revision: 42, entries: [] },
  storage: { getItem: () => null, setItem: () => {} },
  client: { id: 'checkout-7', labels: { region: 'eu' } },
  WebSocket: null,
  heartbeatMs: 1000,
  parse: (text: string) => JSON.parse(text),
  validate: (value, { namespace, key, variant }) => {
    if (variant === 'gray' && value === null) throw new Error(`${namespace}/${key}: no value`);
  },
});

async function use(): Promise<void> {
  await client.ready();
  const timeout: number = client.get('payments', 'timeout_ms', { subject: 'user-42', attrs: { region: 'eu' } }, 1000) as number;
  const evaluation = client.evaluate('payments', 'timeout_ms', { subject: null });
  if (evaluation) {
    const bucketOf: number | null = evaluation.bucket;
    console.log(timeout, evaluation.variant, evaluation.reason, bucketOf, evaluation.revision);
  }
  const off = client.on('change', (change: ChangeEvent) => console.log(change.op, change.entry?.value, change.previous?.revision));
  client.on('recovered', ({ replayed, snapshot }) => console.log(replayed, snapshot));
  client.on('status', (status: Status) => console.log(status));
  client.on('revision', (revision: number) => console.log(revision));
  client.on('error', (error: GraycastError) => console.log(error.code, error.retryable));
  off();
  await client.report('payments', 'timeout_ms', 'gray', 120, 3);
  console.log(evaluateGray(null, 'user-42').variant, bucket('payments/timeout_ms', 'user-42'), client.status, client.id);
  client.close();
}
void use;

// @ts-expect-error an unknown event name
client.on('no-such-event', () => {});
// @ts-expect-error namespaces are required
createClient({ url: 'http://localhost:8080' });
// @ts-expect-error a variant is stable or gray
void client.report('payments', 'timeout_ms', 'blue');
