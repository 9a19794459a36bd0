/** agent.yaml's attestation: and lease: sections: defaults, paths, and what they need. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentConfig } from '../../src/agent/config.ts';
import { DEFAULT_EVENT_LOG_PATH } from '../../src/agent/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

const base = {
  trust: { publicKeys: ['publisher.pub'] },
  contentKey: { file: 'model.key' },
  models: { primary: 'm.egm' },
  review: { enabled: false },
};

test('defaults: both off; the event log at the kernel path; relative paths resolved', () => {
  const c = agentConfig(base, '/etc/edgeguard');
  assert.equal(c.attestation.enabled, false);
  assert.equal(c.lease.enabled, false);
  assert.equal(c.attestation.eventLog, DEFAULT_EVENT_LOG_PATH);
  assert.equal(c.lease.offlineGraceMs, 4 * 3_600_000);
  const on = agentConfig(
    {
      ...base,
      upload: { device: 'device' },
      attestation: { enabled: true, eventLog: 'log.bin' },
      lease: { enabled: true },
    },
    '/etc/edgeguard',
  );
  assert.equal(on.attestation.eventLog, '/etc/edgeguard/log.bin');
  assert.equal(on.attestation.intervalMs, 60_000);
});

test('attestation needs an enrolled device directory; the lease needs upload', () => {
  assert.throws(
    () => agentConfig({ ...base, attestation: { enabled: true } }, '/'),
    (e) => isEdgeguardError(e, 'EG_CONFIG') && /attestation\.device/.test(e.message),
  );
  assert.throws(
    () => agentConfig({ ...base, lease: { enabled: true } }, '/'),
    (e) => isEdgeguardError(e, 'EG_CONFIG') && /lease\.enabled.*upload/.test(e.message),
  );
  assert.throws(() => agentConfig({ ...base, lease: { enabled: true, offlineGraceMs: 10 } }, '/'), {
    code: 'EG_CONFIG',
  });
});
