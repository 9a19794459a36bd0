/** agent.yaml's update: section: the repository or the director, and what the director needs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentConfig } from '../../src/agent/config.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

const base = {
  trust: { publicKeys: ['publisher.pub'] },
  contentKey: { wrapped: 'model.key.wrapped', device: 'device' },
  models: { primary: 'm.egm' },
  review: { enabled: false },
};
const repository = { metadataUrl: 'https://cp:8443/v1/tuf/metadata', targetsUrl: 'https://cp:8443/v1/tuf/targets' };

test('director mode: keys resolved against the config directory; the poll interval optional', () => {
  const c = agentConfig(
    { ...base, upload: { device: 'device' }, update: { director: { keys: ['director.pub'] } } },
    '/etc/edgeguard',
  );
  assert.deepEqual(c.update?.director?.keys, ['/etc/edgeguard/director.pub']);
  assert.equal(c.update?.director?.intervalMs, undefined);
  assert.equal(c.update?.dir, '/etc/edgeguard/device');
  const polled = agentConfig(
    { ...base, upload: { device: 'device' }, update: { director: { keys: ['d.pub'], intervalMs: 60_000 } } },
    '/',
  );
  assert.equal(polled.update?.director?.intervalMs, 60_000);
});

test('update needs the repository or the director; the director needs upload and names the release itself', () => {
  const refused = (value: object, message: RegExp) =>
    assert.throws(
      () => agentConfig({ ...base, ...value }, '/'),
      (e) => isEdgeguardError(e, 'EG_CONFIG') && message.test(e.message),
    );
  refused({ update: {} }, /metadataUrl and targetsUrl.*director\.keys/);
  refused({ update: { metadataUrl: repository.metadataUrl } }, /metadataUrl and targetsUrl/);
  refused({ update: { director: { keys: ['d.pub'] } } }, /update\.director.*needs upload/);
  refused(
    { upload: { device: 'device' }, update: { ...repository, director: { keys: ['d.pub'] } } },
    /remove metadataUrl, targetsUrl and target/,
  );
  refused({ upload: { device: 'device' }, update: { director: { keys: [] } } }, /update\.director\.keys/);
  refused({ upload: { device: 'device' }, update: { director: { keys: ['d.pub'], extra: 1 } } }, /update\.director/);
  refused({ upload: { device: 'device' }, update: { director: { keys: ['d.pub'], intervalMs: 5 } } }, /intervalMs/);
  assert.equal(agentConfig({ ...base, update: repository }, '/').update?.director, undefined);
});
