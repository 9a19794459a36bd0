/**
 * The probing defence at the agent's door (agent.yaml `probing:`): who a client is, and what a
 * refusal of the monitor (src/guard/probing.ts) leads to: 429 with a typed EG_ code and a
 * Retry-After, a Prometheus count, and one `guard.probing` journal event per client and episode.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { refusal } from '../errors/index.ts';
import { ProbingMonitor, type ProbingDecision } from '../guard/index.ts';
import type { ModelInput } from '../inference/index.ts';
import type { AgentConfig } from './config.ts';
import type { AgentJournal } from './agent-journal.ts';
import type { AgentMetrics } from './serve-http.ts';

/** The client of a request: its TLS client certificate's subject when it sent one, else its address. */
export function clientOf(req: FastifyRequest): string {
  const socket = req.raw.socket as Partial<TLSSocket>;
  const subject = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate()?.subject : undefined;
  const cn = subject?.CN;
  if (cn) return `cert:${(Array.isArray(cn) ? cn.join(',') : cn).slice(0, 190)}`;
  return `addr:${(req.ip || 'local').slice(0, 190)}`;
}

export class ProbingGate {
  private readonly monitor: ProbingMonitor;

  constructor(
    config: AgentConfig['probing'],
    private readonly metrics: AgentMetrics,
    private readonly journal: AgentJournal | undefined,
    private readonly model: string,
    now?: () => number,
  ) {
    this.monitor = new ProbingMonitor(config, now);
  }

  /** Before the body is read: a blocked client, or one whose budget is spent, is refused. */
  admit(req: FastifyRequest): void {
    const client = clientOf(req);
    this.enforce(client, this.monitor.admit(client));
  }

  /** Once the input is decoded: a run of near-duplicates from this client is refused, its answer withheld. */
  observe(req: FastifyRequest, inputs: readonly ModelInput[]): void {
    const first = inputs[0];
    if (!first) return;
    const client = clientOf(req);
    this.enforce(client, this.monitor.observe(client, first.data as ArrayLike<number | bigint>));
  }

  private enforce(client: string, d: ProbingDecision): void {
    this.metrics.probingClients.set(this.monitor.size);
    if (d.allowed) return;
    this.metrics.probingRefused.inc({ reason: d.reason });
    if (d.record)
      this.journal?.record('guard.probing', 'denied', {
        client,
        reason: d.reason,
        neighbours: d.neighbours,
        retryAfterS: d.retryAfterS,
        model: this.model,
      });
    const details = { reason: d.reason, retryAfterS: d.retryAfterS };
    if (d.reason === 'budget')
      throw refusal(
        'EG_RATE_LIMITED',
        `this client has used its query budget (probing.budget in agent.yaml); retry in ${d.retryAfterS} s.`,
        { details },
      );
    throw refusal(
      'EG_PROBING',
      `this client sent many near-identical inputs, as a query attack does (probing.nearDuplicates in agent.yaml); refused for ${d.retryAfterS} s.`,
      { details },
    );
  }
}
