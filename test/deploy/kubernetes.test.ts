/**
 * The Kubernetes manifests in deploy/kubernetes, parsed: the security-relevant fields of the agent
 * DaemonSet and the server Deployment, a Secret that commits no password, and a NetworkPolicy that
 * is exactly what `edgeguard harden egress` generates from the example agent.yaml.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { runCli } from '../helpers/cli.ts';
import { REPO_ROOT } from '../helpers/workspace.ts';

const DIR = join(REPO_ROOT, 'deploy', 'kubernetes');

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are checked field by field below */
async function manifests(file: string): Promise<any[]> {
  const docs = parseAllDocuments(await readFile(join(DIR, file), 'utf8'));
  for (const d of docs) assert.deepEqual(d.errors, [], file);
  return docs.map((d) => d.toJS());
}

function checkPodSecurity(spec: any, what: string): void {
  assert.equal(spec.automountServiceAccountToken, false, `${what}: no service account token`);
  assert.equal(spec.hostNetwork ?? false, false);
  assert.equal(spec.hostPID ?? false, false);
  assert.equal(spec.securityContext.runAsNonRoot, true, `${what}: non-root`);
  assert.ok(spec.securityContext.runAsUser > 0);
  assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
  for (const c of spec.containers) {
    const sc = c.securityContext;
    assert.equal(sc.privileged, false, `${what}/${c.name}`);
    assert.equal(sc.allowPrivilegeEscalation, false, `${what}/${c.name}`);
    assert.equal(sc.readOnlyRootFilesystem, true, `${what}/${c.name}: read-only root`);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(sc.capabilities.add, undefined);
    assert.ok(c.resources.limits.memory, `${what}/${c.name}: a memory limit`);
    const tmp = spec.volumes.find((v: any) => v.name === 'tmp');
    assert.equal(tmp?.emptyDir?.medium, 'Memory', `${what}: /tmp in memory`);
  }
}

test('agent DaemonSet: non-root, read-only root, RuntimeDefault seccomp, the TPM through a device plugin', async () => {
  const [ds] = await manifests('agent-daemonset.yaml');
  assert.equal(ds.kind, 'DaemonSet');
  const pod = ds.spec.template.spec;
  checkPodSecurity(pod, 'agent');
  assert.deepEqual(ds.spec.template.metadata.labels, { 'app.kubernetes.io/name': 'edgeguard-agent' });
  const [agent] = pod.containers;
  assert.equal(agent.resources.limits['squat.ai/tpmrm0'], 1, 'the TPM, without privileges');
  assert.ok(pod.securityContext.supplementalGroups.length === 1, 'the tss group for /dev/tpmrm0');
  const hostPaths = pod.volumes.filter((v: any) => v.hostPath).map((v: any) => v.hostPath.path);
  assert.deepEqual(hostPaths, ['/var/lib/edgeguard-agent'], 'no host path but the device directory');
});

test('the NetworkPolicy selects the DaemonSet pods and is what harden egress generates', async () => {
  const [ds] = await manifests('agent-daemonset.yaml');
  const committed = await readFile(join(DIR, 'agent-networkpolicy.yaml'), 'utf8');
  const policy = parseYaml(committed);
  assert.deepEqual(policy.spec.podSelector.matchLabels, ds.spec.template.metadata.labels);
  assert.equal(policy.metadata.namespace, ds.metadata.namespace);
  assert.deepEqual(policy.spec.egress[0].to[0].podSelector.matchLabels, { 'k8s-app': 'kube-dns' }, 'DNS first');
  const generated = await runCli([
    'harden',
    'egress',
    '--config',
    join(DIR, 'agent.example.yaml'),
    '--format',
    'networkpolicy',
  ]);
  assert.equal(generated.code, 0, generated.stderr);
  assert.equal(committed, generated.stdout, 'regenerate agent-networkpolicy.yaml from agent.example.yaml');
});

test('server Deployment: hardened pod, the PostgreSQL password only from the Secret', async () => {
  const [deployment, pvc, service] = await manifests('server-deployment.yaml');
  assert.deepEqual([deployment.kind, pvc.kind, service.kind], ['Deployment', 'PersistentVolumeClaim', 'Service']);
  const pod = deployment.spec.template.spec;
  checkPodSecurity(pod, 'server');
  const [server] = pod.containers;
  const db = server.args[server.args.indexOf('--db') + 1];
  assert.equal(new URL(db).password, '', 'no password on the command line');
  const password = server.env.find((e: any) => e.name === 'PGPASSWORD');
  assert.deepEqual(password.valueFrom.secretKeyRef, { name: 'edgeguard-postgres', key: 'password', optional: false });
});

test('the PostgreSQL Secret commits no value, and the namespace audits at "restricted"', async () => {
  const [secret] = await manifests('postgres-secret.yaml');
  assert.equal(secret.kind, 'Secret');
  assert.equal(secret.metadata.name, 'edgeguard-postgres');
  assert.equal(secret.data, undefined);
  assert.equal(secret.stringData, undefined);
  const [ns] = await manifests('namespace.yaml');
  assert.equal(ns.metadata.labels['pod-security.kubernetes.io/audit'], 'restricted');
});
