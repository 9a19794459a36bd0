/** When a holder should renew: once two thirds of the certificate's lifetime have passed. */
export function renewalDue(notBefore: Date, notAfter: Date, now: Date = new Date()): boolean {
  const life = notAfter.getTime() - notBefore.getTime();
  return now.getTime() >= notBefore.getTime() + (life * 2) / 3;
}
