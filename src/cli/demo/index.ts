/**
 * `edgeguard demo`: the whole system end to end on embedded defaults. Each capability adds its
 * steps to DEMO_STEPS, in the order a fleet would meet them.
 */
import { keysStep, packStep, verifyStep, runStep, tamperStep } from './model-step.ts';
import type { DemoStep } from './context.ts';

export { type DemoStep, type DemoContext, makeContext } from './context.ts';

export const DEMO_STEPS: DemoStep[] = [
  keysStep,
  packStep,
  verifyStep,
  runStep,
  tamperStep,
  // Device key binding (TPM / software key store) steps go here.
  // Input guard and review queue steps go here.
  // Control plane (server, enrollment) steps go here.
  // Audit log steps go here.
];
