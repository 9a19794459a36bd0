/**
 * `edgeguard demo`: the whole system end to end on embedded defaults. Each capability adds its
 * steps to DEMO_STEPS, in the order a fleet would meet them.
 */
import { keysStep, packStep, verifyStep, runStep, tamperStep } from './model-step.ts';
import { deviceStep } from './device-step.ts';
import { auditStep } from './audit-step.ts';
import { controlPlaneStep } from './control-plane-step.ts';
import { guardStep } from './guard-step.ts';
import { sensorStep } from './sensor-step.ts';
import { agentStep } from './agent-step.ts';
import { tamperLockStep } from './tamper-lock-step.ts';
import { attestationStep } from './attestation-step.ts';
import { kernelUpdateStep } from './kernel-update-step.ts';
import { releaseStep } from './release-step.ts';
import type { DemoStep } from './context.ts';

export { type DemoStep, type DemoContext, makeContext } from './context.ts';

export const DEMO_STEPS: DemoStep[] = [
  keysStep,
  packStep,
  verifyStep,
  runStep,
  sensorStep,
  tamperStep,
  deviceStep,
  // Input guard and review queue steps go here.
  guardStep,
  agentStep,
  // Control plane (server, enrollment) steps go here.
  controlPlaneStep,
  attestationStep,
  kernelUpdateStep,
  releaseStep,
  // Audit log steps go here.
  auditStep,
  tamperLockStep,
];
