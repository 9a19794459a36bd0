/** The files under examples/ are read by the same code that reads a user's own, and pass. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAgentConfig } from '../src/agent/index.ts';
import { parseAuditEvent } from '../src/audit/index.ts';
import { connectionPaths } from '../src/cli/connection.ts';
import { REPO_ROOT } from './helpers/workspace.ts';

const EXAMPLES = join(REPO_ROOT, 'examples');

test('examples/agent.yaml is a valid agent configuration, with paths resolved against it', async () => {
  const config = await loadAgentConfig(join(EXAMPLES, 'agent.yaml'));
  assert.equal(config.listen.port, 8480);
  assert.equal(config.models.primary, join(EXAMPLES, 'mnist-cnn.egm'));
  assert.deepEqual(config.egress?.dns, ['192.0.2.53'], 'the example shows the egress section');
});

test('examples/admin.yaml gives a connection whose relative paths resolve against the file', () => {
  const saved = { ...process.env };
  try {
    for (const k of Object.keys(process.env)) if (k.startsWith('EDGEGUARD_')) delete process.env[k];
    const c = connectionPaths({ config: join(EXAMPLES, 'admin.yaml') }, 'required');
    assert.equal(c.server, 'https://cp.example.internal:8443');
    assert.equal(c.ca, join(EXAMPLES, 'fleet-ca.pem'));
    assert.equal(c.cert, join(EXAMPLES, 'admin.crt'));
    assert.equal(c.key, join(EXAMPLES, 'admin.key'));
    // A flag wins over the environment, which wins over the file.
    process.env.EDGEGUARD_SERVER = 'https://from-env:8443';
    assert.equal(connectionPaths({ config: join(EXAMPLES, 'admin.yaml') }).server, 'https://from-env:8443');
    assert.equal(
      connectionPaths({ config: join(EXAMPLES, 'admin.yaml'), server: 'https://from-flag:8443' }).server,
      'https://from-flag:8443',
    );
  } finally {
    process.env = saved;
  }
});

test('examples/event.json is an event `audit append` accepts', async () => {
  const value = JSON.parse(await readFile(join(EXAMPLES, 'event.json'), 'utf8')) as Record<string, unknown>;
  const event = parseAuditEvent({ ...value, actor: { kind: 'admin', id: 'set-by-server' } }, 'examples/event.json');
  assert.equal(event.type, 'admin.action');
});
