/*
 * The dashboard's client script (no inline scripts: the CSP allows only files from this server).
 * Three jobs, each run when its page holds the element it needs:
 *   - sign-in: post the one-time token from the link's fragment, then go to the dashboard;
 *   - audit proofs: check, in this browser and against the pinned log key, the checkpoint's
 *     Ed25519 signature (C2SP signed-note) and each entry's RFC 9162 inclusion proof (WebCrypto
 *     SHA-256), so that a server whose database was altered cannot show a forged entry as proven;
 *   - guard activity: draw the verdicts per model and hour with Chart.js.
 */
/* global document, window, location, history, fetch, crypto, TextEncoder, atob, Chart */
'use strict';

(function () {
  const enc = new TextEncoder();

  function b64(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(...parts) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** C2SP signed-note verifier key: name "+" hex(key ID) "+" base64(0x01 || Ed25519 public key). */
  async function parseVerifierKey(text) {
    // The name has no "+"; the base64 key may (so split at the first two only).
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(text.trim());
    if (!m) throw new Error('the log key is not name+keyid+key');
    const [, name, keyIdHex, keyB64] = m;
    const key = b64(keyB64);
    if (key.length !== 33 || key[0] !== 0x01) throw new Error('the log key is not an Ed25519 key');
    const pub = key.slice(1);
    const keyId = (await sha256(enc.encode(name), new Uint8Array([0x0a, 0x01]), pub)).slice(0, 4);
    if (hex(keyId) !== keyIdHex) throw new Error('the log key id does not match its key');
    return { name, keyId, pub };
  }

  /** Open a signed note with one known key: the text of the note, or an error. */
  async function openNote(note, verifier) {
    const split = note.lastIndexOf('\n\n');
    if (split < 0) throw new Error('the checkpoint has no signature lines');
    const text = note.slice(0, split + 1);
    const lines = note
      .slice(split + 2)
      .split('\n')
      .filter((l) => l !== '');
    const key = await crypto.subtle.importKey('raw', verifier.pub, { name: 'Ed25519' }, false, ['verify']);
    for (const line of lines) {
      const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
      if (!m || m[1] !== verifier.name) continue;
      const sig = b64(m[2]);
      if (sig.length !== 68 || !equal(sig.slice(0, 4), verifier.keyId)) continue;
      const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, sig.slice(4), enc.encode(text));
      if (!ok) throw new Error('the checkpoint signature by the log key does not verify');
      return text;
    }
    throw new Error('the checkpoint carries no signature by the pinned log key');
  }

  /** C2SP tlog-checkpoint body: origin, tree size, base64 root hash. */
  function parseCheckpoint(text) {
    const lines = text.split('\n');
    const size = Number(lines[1]);
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1] || '') || !Number.isSafeInteger(size)) throw new Error('bad tree size');
    const root = b64(lines[2] || '');
    if (root.length !== 32) throw new Error('bad root hash');
    return { origin: lines[0], size, root };
  }

  /** RFC 9162 section 2.1.3.2: the root an inclusion proof leads to from a leaf. */
  async function rootFromInclusionProof(index, size, leafHash, proof) {
    if (index >= size) throw new Error('the entry is outside the tree');
    let fn = index;
    let sn = size - 1;
    let r = leafHash;
    for (const p of proof) {
      if (sn === 0) throw new Error('the proof is too long');
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(new Uint8Array([0x01]), p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
      } else {
        r = await sha256(new Uint8Array([0x01]), r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error('the proof is too short');
    return r;
  }

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
    let checkpoint;
    try {
      if (!bundle.checkpoint) throw new Error('the log has signed no checkpoint yet');
      const verifier = await parseVerifierKey(bundle.logKey);
      checkpoint = parseCheckpoint(await openNote(bundle.checkpoint, verifier));
      if (state)
        mark(state, true, `Checkpoint signature verified with the pinned log key (tree size ${checkpoint.size})`);
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
})();
