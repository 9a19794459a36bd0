/** A control plane's audit store made to refuse writes (a trigger in the database itself), and the count of events lost. */
import { sql } from 'kysely';
import type { TestFleet } from '../server/fleet-helpers.ts';

export async function failureCount(fleet: TestFleet, type: string): Promise<number> {
  const metric = await fleet.server.ctx.registry.getSingleMetric('edgeguard_audit_event_failures_total')?.get();
  return metric?.values.find((v) => v.labels.type === type)?.value ?? 0;
}

/** Make the database itself refuse new audit entries (a trigger), or take them again. */
export async function refuseAuditWrites(
  backend: 'sqlite' | 'postgres',
  db: TestFleet['server']['ctx']['store']['db'],
  refuse: boolean,
): Promise<void> {
  if (backend === 'sqlite') {
    await sql
      .raw(
        refuse
          ? `create trigger audit_down before insert on audit_entries begin select raise(abort, 'the audit store refuses writes'); end`
          : 'drop trigger audit_down',
      )
      .execute(db);
    return;
  }
  if (refuse) {
    await sql
      .raw(
        `create function audit_down() returns trigger language plpgsql as $$ begin raise exception 'the audit store refuses writes'; end $$`,
      )
      .execute(db);
    await sql
      .raw('create trigger audit_down before insert on audit_entries for each row execute function audit_down()')
      .execute(db);
  } else {
    await sql.raw('drop trigger audit_down on audit_entries').execute(db);
    await sql.raw('drop function audit_down()').execute(db);
  }
}
