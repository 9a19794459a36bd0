/**
 * The shard openers a test should run through: the native addon when it is built, and always the
 * JavaScript path. CI builds the addon and sets EDGEGUARD_NATIVE_REQUIRED=1, so there a missing
 * addon fails test/model/native-opener.test.ts instead of silently testing one path.
 */
import { nativeOpenerStatus } from '../../src/model/native-opener.ts';
import type { EngineTuning } from '../../src/model/engine-tuning.ts';

export const NATIVE_AVAILABLE = nativeOpenerStatus().available;
export const ENGINES: Array<'native' | 'js'> = NATIVE_AVAILABLE ? ['native', 'js'] : ['js'];

/** One way to open shards: an engine, and how it spreads its work (src/model/engine-tuning.ts). */
export type EnginePath = { engine: 'native' | 'js' } & EngineTuning;
