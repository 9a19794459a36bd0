/** The one place ONNX Runtime is imported from, so telemetry is off before the library loads. */
import './no-telemetry.ts';
import * as ort from 'onnxruntime-node';

export { ort };
