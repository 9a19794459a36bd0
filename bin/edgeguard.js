#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx, so a fresh clone needs only `npm ci`.
import { register } from 'tsx/esm/api';

// ONNX Runtime's telemetry must be off before its native library loads (src/inference/no-telemetry.ts).
process.env.ORT_DISABLE_TELEMETRY = '1';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
