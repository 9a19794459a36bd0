/**
 * Whether a device may receive a release now. The attestation module supplies the real gate
 * (fresh, passing evidence); release code only ever takes one as a parameter.
 */
export type AttestationGate = (deviceId: string) => Promise<{ ok: boolean; reason?: string }>;
