#!/usr/bin/env node
// The CLI runs the compiled JavaScript in dist/ (`npm run build`; `npm ci`, `npm install` and
// `npm pack` build it through the `prepare` script). No TypeScript loader at run time.

// ONNX Runtime's telemetry must be off before its native library loads (src/inference/no-telemetry.ts).
process.env.ORT_DISABLE_TELEMETRY = '1';

let main;
try {
  ({ main } = await import('../dist/cli/main.js'));
} catch (e) {
  if (e?.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/cli/main.js')) {
    process.stderr.write('EG_CONFIG: edgeguard is not built; run `npm run build` in its directory (npm ci does it).\n');
    process.exit(2);
  }
  throw e;
}
process.exitCode = await main(process.argv);
