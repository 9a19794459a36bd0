/**
 * The agent's egress allowlist on a real TLS control plane: a client whose server is on the plan
 * connects; an unlisted address, an unlisted port, or a name that resolves to an unlisted address
 * is refused with EG_EGRESS_DENIED before any connection, and the denial is reported.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { EgressDialer, FleetClient, type EgressDenial } from '../../src/fleet/index.ts';
import { planEgress } from '../../src/harden/index.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

describe('egress dialer', () => {
  let fleet: TestFleet;
  let admin: { cert: string; key: string };
  let port: number;

  before(async () => {
    fleet = await startTestFleet();
    admin = await fleet.adminCredential('operator');
    port = Number(new URL(fleet.server.url).port);
  });
  after(() => fleet?.stop());

  async function clientTo(server: string, allowed: string) {
    const denials: EgressDenial[] = [];
    const plan = await planEgress({ egress: { controlPlane: allowed, dns: [], ntp: [], endpoints: [] } });
    const dialer = new EgressDialer(plan, (d) => denials.push(d));
    const client = new FleetClient({ server, ca: fleet.ca.rootPem, ...admin, dialer });
    return { client, denials };
  }

  const denied = (e: unknown) => isEdgeguardError(e, 'EG_EGRESS_DENIED');

  it('connects to the listed control plane', async () => {
    const { client, denials } = await clientTo(fleet.server.url, fleet.server.url);
    try {
      const r = await client.call<{ devices: unknown[] }>('GET', '/v1/devices');
      assert.ok(Array.isArray(r.body.devices));
      assert.deepEqual(denials, []);
    } finally {
      client.close();
    }
  });

  it('refuses an unlisted address, an unlisted port and a name resolving elsewhere', async () => {
    const cases = [
      { server: fleet.server.url, allowed: `https://127.0.0.2:${port}`, reason: /address not listed/ },
      { server: fleet.server.url, allowed: `https://127.0.0.1:${port === 1 ? 2 : port - 1}`, reason: /not listed/ },
      { server: `https://localhost:${port}`, allowed: `https://127.0.0.2:${port}`, reason: /resolves to .*not listed/ },
    ];
    for (const c of cases) {
      const { client, denials } = await clientTo(c.server, c.allowed);
      try {
        await assert.rejects(() => client.call('GET', '/v1/devices'), denied, c.server);
        assert.equal(denials.length, 1, c.server);
        assert.equal(denials[0]!.port, port);
        assert.match(denials[0]!.reason, c.reason);
      } finally {
        client.close();
      }
    }
  });

  it('allows only agent TCP rules: NTP is for the host, not the agent', async () => {
    const plan = await planEgress({
      egress: { controlPlane: fleet.server.url, dns: ['127.0.0.53'], ntp: ['127.0.0.123'], endpoints: [] },
    });
    const dialer = new EgressDialer(plan);
    assert.equal(dialer.allows('127.0.0.1', port), true);
    assert.equal(dialer.allows('127.0.0.53', 53), true, 'DNS over TCP to the listed resolver');
    assert.equal(dialer.allows('127.0.0.123', 123), false);
    assert.equal(dialer.allows('not-an-address', port), false);
  });
});
