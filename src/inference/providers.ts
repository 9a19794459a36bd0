/**
 * ONNX Runtime execution providers: which hardware runs the model. CPU is always there; CUDA,
 * TensorRT and OpenVINO only where the installed onnxruntime-node was built with them, which its
 * native binding lists (listSupportedBackends). An unknown name, or one this build lacks, is a
 * configuration error rather than a silent fall back to the CPU.
 */
import { EdgeguardError } from '../errors/index.ts';
import { ort } from './ort.ts';

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'openvino'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** The providers this installation of onnxruntime-node lists. */
export function availableExecutionProviders(): ExecutionProvider[] {
  const listed = new Set(ort.listSupportedBackends().map((b) => b.name));
  return EXECUTION_PROVIDERS.filter((p) => listed.has(p));
}

/** Check a configured list (order is preference); the default is the CPU alone. */
export function resolveExecutionProviders(requested: readonly string[] | undefined): ExecutionProvider[] {
  if (!requested || requested.length === 0) return ['cpu'];
  const available = availableExecutionProviders();
  const out: ExecutionProvider[] = [];
  for (const name of requested) {
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(name))
      throw new EdgeguardError(
        'EG_CONFIG',
        `execution provider "${name}" is unknown; use one of ${EXECUTION_PROVIDERS.join(', ')}.`,
      );
    if (!(available as string[]).includes(name))
      throw new EdgeguardError(
        'EG_CONFIG',
        `execution provider "${name}" is not in this onnxruntime-node build (it lists ${available.join(', ')}).`,
      );
    if (!out.includes(name as ExecutionProvider)) out.push(name as ExecutionProvider);
  }
  return out;
}
