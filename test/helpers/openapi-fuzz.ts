/**
 * The API fuzzer's common half: the operations of an OpenAPI 3 document, fast-check arbitraries
 * for valid-shaped values of a JSON schema and for hostile bodies, raw HTTP(S) requests on one
 * keep-alive agent per credential, and the invariant every answer must keep (never a 5xx, every
 * error in the `{"error":{"code":"EG_..."}}` shape). Runs: EDGEGUARD_FUZZ_LONG=1 gives >= 10,000
 * requests per route, else a short CI run.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import fc from 'fast-check';

/** Requests per route and credential kind: a few hundred per route in CI, >= 10,000 per route long. */
export function runsPerRoute(kinds: number): number {
  return process.env.EDGEGUARD_FUZZ_LONG === '1' ? Math.ceil(10_000 / kinds) : Math.ceil(200 / kinds);
}

// A JSON schema as far as the documents use it.
export interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  additionalProperties?: boolean | Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
}

export interface Operation {
  method: string;
  /** The path template, e.g. /v1/devices/{id}. */
  path: string;
  /** The security schemes any one of which the route takes; empty when it is open. */
  security: string[];
  /** Body schemas by content type. */
  bodies: Record<string, Schema>;
  /** Query parameters and their schemas. */
  query: Record<string, Schema>;
}

interface OpenApiDoc {
  paths: Record<
    string,
    Record<
      string,
      {
        security?: Array<Record<string, unknown>>;
        requestBody?: { content?: Record<string, { schema?: Schema }> };
        parameters?: Array<{ in: string; name: string; schema?: Schema }>;
      }
    >
  >;
}

export function operationsOf(doc: unknown): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries((doc as OpenApiDoc).paths)) {
    for (const [method, op] of Object.entries(methods)) {
      if (!['get', 'post', 'put', 'delete', 'patch'].includes(method)) continue;
      const bodies: Record<string, Schema> = {};
      for (const [type, c] of Object.entries(op.requestBody?.content ?? {})) bodies[type] = c.schema ?? {};
      const query: Record<string, Schema> = {};
      for (const p of op.parameters ?? []) if (p.in === 'query') query[p.name] = p.schema ?? {};
      ops.push({
        method: method.toUpperCase(),
        path,
        security: (op.security ?? []).flatMap((s) => Object.keys(s)),
        bodies,
        query,
      });
    }
  }
  return ops;
}

/** Values of the shape the schema describes (bounds loosened a little, so edges get hit). */
export function valueOf(s: Schema, depth = 0): fc.Arbitrary<unknown> {
  if (s.enum) return fc.constantFrom(...s.enum);
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives?.length) return fc.oneof(...alternatives.map((a) => valueOf(a, depth)));
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : ['string'];
  return fc.oneof(...types.map((t) => valueOfType(t, s, depth)));
}

function valueOfType(t: string, s: Schema, depth: number): fc.Arbitrary<unknown> {
  switch (t) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer':
      return fc.integer({ min: (s.minimum ?? -1000) - 1, max: (s.maximum ?? 1_000_000) + 1 });
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });
    case 'array':
      return depth > 3
        ? fc.constant([])
        : fc.array(valueOf(s.items ?? {}, depth + 1), { maxLength: Math.min(s.maxItems ?? 8, 8) });
    case 'object': {
      if (depth > 3) return fc.constant({});
      const props = s.properties ?? {};
      const record = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, valueOf(v, depth + 1)]));
      return fc.record(record, { requiredKeys: (s.required ?? []).filter((k) => k in props) });
    }
    default:
      return fc.oneof(
        fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 64, 256) }),
        fc.base64String({ maxLength: 128 }),
        fc.stringMatching(/^[0-9a-f]{32,64}$/),
      );
  }
}

export interface RawBody {
  contentType: string | undefined;
  bytes: Buffer | undefined;
}

/** A body of the route's own shape, or a hostile one (wrong type, broken JSON, deep nesting, bytes). */
export function bodyFor(op: Operation): fc.Arbitrary<RawBody> {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v) ?? 'null');
  const shaped = Object.entries(op.bodies).map(([type, schema]) =>
    valueOf(schema).map((v) => ({
      contentType: type,
      bytes: type.includes('json') ? json(v) : Buffer.from(String(v)),
    })),
  );
  const hostile: Array<fc.Arbitrary<RawBody>> = [
    fc.constant({ contentType: undefined, bytes: undefined }),
    fc.jsonValue({ maxDepth: 4 }).map((v) => ({ contentType: 'application/json', bytes: json(v) })),
    fc.uint8Array({ maxLength: 2048 }).map((b) => ({
      contentType: 'application/json',
      bytes: Buffer.from(b),
    })),
    fc
      .constantFrom('text/plain', 'application/x-www-form-urlencoded', 'image/png', 'application/octet-stream', 'x/y;;')
      .chain((contentType) => fc.uint8Array({ maxLength: 512 }).map((b) => ({ contentType, bytes: Buffer.from(b) }))),
    fc.nat({ max: 5000 }).map((n) => ({
      contentType: 'application/json',
      bytes: Buffer.from('['.repeat(n) + ']'.repeat(n)),
    })),
    fc.constant({ contentType: 'application/json', bytes: Buffer.from('{"__proto__":{"admin":true},"a":1}') }),
  ];
  return fc.oneof(...shaped, ...hostile);
}

/** The path with its parameters filled: the given ids, or hostile segments. */
export function pathFor(op: Operation, ids: string[]): fc.Arbitrary<string> {
  const params = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  if (params.length === 0) return fc.constant(op.path);
  const segment = fc.oneof(
    fc.constantFrom(...ids),
    fc.string({ maxLength: 40 }).map(encodeURIComponent),
    fc.constantFrom('..', '%2e%2e', '0', '-1', '18446744073709551616', '%00', 'a'.repeat(300)),
  );
  return fc.array(segment, { minLength: params.length, maxLength: params.length }).map((vals) => {
    let p = op.path;
    params.forEach((name, i) => (p = p.replace(`{${name}}`, vals[i]!)));
    return p;
  });
}

/** A query string: the route's own parameters with valid-shaped or hostile values. */
export function queryFor(op: Operation): fc.Arbitrary<string> {
  const names = Object.keys(op.query);
  if (names.length === 0) return fc.constantFrom('', '?x=1', '?%ZZ');
  const entries = names.map((n) =>
    fc.option(
      fc.oneof(valueOf(op.query[n]!).map(String), fc.string({ maxLength: 30 })).map((v) => [n, v] as const),
      { nil: undefined },
    ),
  );
  return fc.tuple(...entries).map((kv) => {
    const q = new URLSearchParams();
    for (const e of kv) if (e) q.append(e[0], e[1]);
    const s = q.toString();
    return s ? `?${s}` : '';
  });
}

export interface RawResponse {
  status: number;
  contentType: string;
  text: string;
}

/** One request on `agent` (http or https by the URL), never throwing on an HTTP status. */
export function rawRequest(
  base: string,
  agent: HttpAgent | HttpsAgent,
  method: string,
  path: string,
  body: RawBody,
): Promise<RawResponse> {
  const url = new URL(path, base);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent,
        headers: {
          ...(body.contentType ? { 'content-type': body.contentType } : {}),
          ...(body.bytes ? { 'content-length': String(body.bytes.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body.bytes);
  });
}

/** Why an answer breaks the invariants (never a 5xx; errors as {"error":{"code":"EG_..."}}), or undefined. */
export function invariantBroken(r: RawResponse): string | undefined {
  if (r.status >= 500) return `status ${r.status}: ${r.text.slice(0, 300)}`;
  if (r.status < 400) return undefined;
  let code: unknown;
  try {
    code = (JSON.parse(r.text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    return `status ${r.status} with a non-JSON error body: ${r.text.slice(0, 200)}`;
  }
  if (typeof code !== 'string' || !code.startsWith('EG_'))
    return `status ${r.status} with a non-EG error body: ${r.text.slice(0, 200)}`;
  return undefined;
}
