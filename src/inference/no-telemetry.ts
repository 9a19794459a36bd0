/**
 * onnxruntime-node 1.30 on Linux ships Microsoft's 1DS telemetry client: unless
 * ORT_DISABLE_TELEMETRY is set when the native library loads, it writes a device id and queued
 * events under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and a session file in TMPDIR, and
 * would upload them to mobile.events.data.microsoft.com. On a device whose egress is locked down
 * and whose disk must hold nothing about its inputs, that is not acceptable: this module runs
 * before ONNX Runtime is loaded (see ort.ts) and turns it off. test/cli/run-no-disk.test.ts fails
 * if it ever comes back.
 */
process.env.ORT_DISABLE_TELEMETRY = '1';
export {};
