/*
 * The dashboard's client script (no inline scripts: the CSP allows only files from this server).
 * Three jobs, each run when its page holds the element it needs:
 *   - sign-in: post the one-time token from the link's fragment, then go to the dashboard;
 *   - audit proofs: check, in this browser and against the pinned log key, the checkpoint's
 *     Ed25519 signature (C2SP signed-note) and each entry's RFC 9162 inclusion proof (WebCrypto
 *     SHA-256; verify.js), so that a server whose database was altered cannot show a forged entry
 *     as proven;
 *   - guard activity: draw the verdicts per model and hour with Chart.js.
 */
/* global document, window, location, history, fetch, localStorage, btoa, Chart */
import {
  b64,
  equal,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  rootFromInclusionProof,
  sha256,
  verifyConsistency,
} from './verify.js';

function mark(el, ok, text) {
  el.textContent = '';
  const span = document.createElement('span');
  span.className = ok ? 'badge ok' : 'badge bad';
  span.textContent = text;
  el.appendChild(span);
  el.dataset.verified = ok ? 'true' : 'false';
}

async function checkProofs(bundle) {
  const state = document.getElementById('checkpoint-state');
  const cells = document.querySelectorAll('[data-proof-index]');
  if (!bundle.checkpoint && cells.length === 0) {
    // An empty log: nothing to verify yet, and nothing wrong.
    for (const id of ['checkpoint-state', 'consistency-state']) {
      const el = document.getElementById(id);
      if (el) el.textContent = 'The log has signed no checkpoint yet.';
    }
    return;
  }
  let checkpoint;
  try {
    if (!bundle.checkpoint) throw new Error('the log has signed no checkpoint yet');
    const verifier = await parseVerifierKey(bundle.logKey);
    checkpoint = parseCheckpoint(await openNote(bundle.checkpoint, verifier));
    if (state)
      mark(state, true, `Checkpoint signature verified with the pinned log key (tree size ${checkpoint.size})`);
    const consistency = document.getElementById('consistency-state');
    if (consistency) void checkConsistency(consistency, bundle.logKey, checkpoint);
  } catch (e) {
    if (state) mark(state, false, `Checkpoint not verified: ${e.message}`);
    for (const cell of cells) mark(cell, false, 'not verified (no valid checkpoint)');
    return;
  }
  const byIndex = new Map(bundle.proofs.map((p) => [p.index, p]));
  for (const cell of cells) {
    const p = byIndex.get(Number(cell.dataset.proofIndex));
    try {
      if (!p) throw new Error('no proof');
      const leafHash = await sha256(new Uint8Array([0x00]), b64(p.leaf));
      const root = await rootFromInclusionProof(p.index, checkpoint.size, leafHash, p.proof.map(b64));
      if (!equal(root, checkpoint.root)) throw new Error('the proof does not lead to the signed root');
      mark(cell, true, 'verified');
    } catch (e) {
      mark(cell, false, `FAILED: ${e.message}`);
    }
  }
}

/**
 * Like a witness: the browser remembers the last checkpoint it verified for this log key and
 * checks that the new one extends it (RFC 9162 consistency proof from the public audit API).
 */
async function checkConsistency(el, logKey, checkpoint) {
  const slot = `edgeguard-checkpoint:${logKey}`;
  const remember = () =>
    localStorage.setItem(
      slot,
      JSON.stringify({ size: checkpoint.size, root: btoa(String.fromCharCode(...checkpoint.root)) }),
    );
  const seen = JSON.parse(localStorage.getItem(slot) || 'null');
  if (!seen) {
    remember();
    mark(
      el,
      true,
      `First visit from this browser: it now remembers the checkpoint at size ${checkpoint.size} to check the next one against`,
    );
    return;
  }
  try {
    let proof = [];
    if (seen.size > 0 && seen.size < checkpoint.size) {
      const r = await fetch(`/v1/audit/proof/consistency?from=${seen.size}&to=${checkpoint.size}`);
      if (!r.ok) throw new Error(`the consistency proof could not be fetched (HTTP ${r.status})`);
      proof = (await r.json()).proof.map(b64);
    }
    await verifyConsistency(seen.size, b64(seen.root), checkpoint.size, checkpoint.root, proof);
    remember();
    mark(el, true, `Consistent with the checkpoint this browser saw before (size ${seen.size}): the log only grew`);
  } catch (e) {
    mark(el, false, `NOT consistent with the checkpoint this browser saw before (size ${seen.size}): ${e.message}`);
  }
}

async function signIn(box) {
  const token = location.hash.slice(1);
  if (!token) return;
  history.replaceState(null, '', location.pathname);
  box.textContent = 'Signing in…';
  try {
    const r = await fetch('/ui/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
      credentials: 'same-origin',
    });
    const body = await r.json();
    if (r.ok) {
      location.replace(body.next);
      return;
    }
    box.textContent = (body.error && body.error.message) || `Sign-in failed (HTTP ${r.status}).`;
    box.className = 'error';
  } catch (e) {
    box.textContent = `Sign-in failed: ${e.message}`;
    box.className = 'error';
  }
}

const PALETTE = ['#1f6feb', '#b35900', '#1a7f37', '#8250df', '#cf222e', '#0a7480'];

function drawChart(canvas, activity) {
  if (typeof Chart === 'undefined') return;
  const datasets = [];
  activity.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    datasets.push({ label: `${s.model}: flagged`, data: s.flagged, backgroundColor: color, stack: s.model });
    datasets.push({
      label: `${s.model}: rejected`,
      data: s.rejected,
      backgroundColor: color + '99',
      borderColor: color,
      borderWidth: 1,
      stack: s.model,
    });
  });
  new Chart(canvas, {
    type: 'bar',
    data: { labels: activity.hours.map((h) => h.slice(0, 16).replace('T', ' ')), datasets },
    options: {
      animation: false,
      responsive: false,
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
}

function jsonOf(id) {
  const el = document.getElementById(id);
  return el ? JSON.parse(el.textContent) : undefined;
}

document.addEventListener('DOMContentLoaded', () => {
  const box = document.getElementById('signin');
  if (box) {
    void signIn(box);
    // A link opened on the sign-in page already changes only the fragment: no new page load.
    window.addEventListener('hashchange', () => void signIn(box));
  }
  const proofs = jsonOf('audit-proofs');
  if (proofs) void checkProofs(proofs);
  const activity = jsonOf('guard-activity');
  const canvas = document.getElementById('guard-chart');
  if (activity && canvas) drawChart(canvas, activity);
});
