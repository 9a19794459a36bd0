/**
 * Wilson score interval for a binomial proportion (Wilson, JASA 1927; Agresti and Coull, The
 * American Statistician 1998): k successes in n trials, two-sided at z (1.96 for 95%). Unlike the
 * normal approximation it stays inside [0, 1] and behaves at k = 0 and k = n.
 */
export function wilsonInterval(k: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
