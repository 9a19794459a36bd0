/**
 * Public face of the runtime: a protected model behind the guard (models from their packages, the
 * guard over them) and one input -> verdict, shared by the agent, the CLI and the demo.
 */
export {
  guardModelSet,
  guardOver,
  loadGuardProfile,
  openGuardedModel,
  openModelSet,
  type GuardSpec,
  type GuardTarget,
  type GuardedModel,
  type GuardedModelSpec,
  type ModelSet,
  type ModelSetSpec,
} from './guarded-model.ts';
export { checkInput, checkInputKeeping, type GuardedInput, type InputVerdict, type Wipeable } from './check-input.ts';
export {
  checkImageStructure,
  imageStructureCheck,
  type ImageFormat,
  type ImageStructureCheck,
  type ImageStructureOptions,
} from './image-structure.ts';
