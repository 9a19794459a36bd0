/**
 * Public face of the tamper module: sensors read through the kernel's interfaces (GPIO character
 * device, IIO and hwmon sysfs, a probe command), debounced and self-tested by a monitor, and the
 * response that locks the device (stop serving, wipe, lock state, tamper PCR, journal, notify).
 * The agent holds a TamperGuard; re-provisioning calls clearTamperLock.
 */
export {
  type TamperConfig,
  type TamperSensorConfig,
  type GpioSensorConfig,
  type AccelerometerSensorConfig,
  type IntrusionSensorConfig,
  type CommandSensorConfig,
  tamperConfigSchema,
  tamperSensorSchema,
  parseTamperConfig,
} from './config.ts';
export { type TamperSensor, type TamperSensorKind, type SensorReading, type Debounce } from './sensor.ts';
export { parseSysfsInteger, parseSysfsDecimal, parseSysfsFlag } from './sysfs-value.ts';
export {
  type GpioLineReader,
  type GpioValue,
  type GpioEdge,
  GpioSensor,
  GpiogetReader,
  GpiomonReader,
  SysfsGpioReader,
  parseGpiogetOutput,
  parseGpiomonLine,
} from './gpio.ts';
export { type Vector3, AccelerometerSensor, angleBetween, classifyAcceleration } from './accelerometer.ts';
export { IntrusionSensor } from './intrusion.ts';
export { CommandSensor } from './command.ts';
export { type DebounceState, debounceStep } from './debounce.ts';
export {
  type TamperFinding,
  type TamperHandlers,
  type SensorOutcome,
  TamperMonitor,
  createTamperSensor,
} from './monitor.ts';
export {
  type TamperActions,
  type TamperResponseOptions,
  type TamperResponseReport,
  type TamperResponseStep,
  type TamperResponseStepName,
  TAMPER_RESPONSE_STEPS,
  respondToTamper,
  tamperPcrDigest,
} from './response.ts';
export {
  type LockState,
  LOCK_STATE_FILE,
  lockStatePath,
  readLockState,
  isLocked,
  lockedError,
  clearTamperLock,
} from './lock-state.ts';
export { type TamperGuardOptions, TamperGuard } from './tamper-guard.ts';
