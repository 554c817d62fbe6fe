/**
 * The node's configuration: one zod schema, read once at start-up from defaults, a file
 * (`--config`, JSON or YAML), `DWCP_*` environment variables and command-line flags, in rising
 * precedence. A bad value fails start-up with an error that names its key.
 */
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { extname } from 'node:path';
import { defaultNodeName } from '@novacron/consensus';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const port = z.number().int().min(0).max(65_535);
const host = z.string().min(1);

export const nodeConfigSchema = z
  .object({
    dataDir: z.string().min(1).default('./.dwcp'),
    nodeName: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 letters, digits, dots, dashes or underscores')
      .default(defaultNodeName),
    clusterName: z.string().min(1).max(63).default('dwcp'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    api: z
      .object({
        host: host.default('127.0.0.1'),
        port: port.default(7700),
        /** The URL other nodes and the CLI use to reach this API; derived from host and port if unset. */
        advertiseUrl: z.string().url().optional(),
      })
      .strict()
      .default({}),
    peer: z
      .object({
        host: host.default('127.0.0.1'),
        port: port.default(7701),
        /** host:port other nodes dial, when it differs from host:port (NAT, 0.0.0.0). */
        advertise: z.string().optional(),
      })
      .strict()
      .default({}),
    grpcApi: z
      .object({
        /** Defaults to api.host. */
        host: host.optional(),
        port: port.default(7702),
      })
      .strict()
      .default({}),
    /** API URL of a member to join through, e.g. https://10.0.0.5:7700. */
    join: z.string().url().optional(),
    joinToken: z.string().min(1).optional(),
    capacity: z
      .object({
        vcpus: z
          .number()
          .int()
          .positive()
          .default(() => cpus().length),
        memoryMiB: z
          .number()
          .int()
          .positive()
          .default(() => Math.floor(totalmem() / 1024 / 1024)),
      })
      .strict()
      .default({}),
    raft: z
      .object({
        electionTicks: z.number().int().min(2).default(10),
        heartbeatTicks: z.number().int().min(1).default(1),
        minTickMs: z.number().int().positive().default(50),
        maxTickMs: z.number().int().positive().default(2000),
        snapshotEvery: z.number().int().positive().default(1000),
        requestTimeoutMs: z.number().int().positive().default(5000),
      })
      .strict()
      .default({}),
    tracing: z
      .object({
        /** OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318); OTEL_EXPORTER_OTLP_ENDPOINT also works. */
        otlpEndpoint: z.string().url().optional(),
      })
      .strict()
      .default({}),
    /** How this node runs VMs. */
    hypervisor: z
      .object({
        /** `auto`: QEMU when its binary runs, otherwise the simulated driver (which says so in the log). */
        driver: z.enum(['auto', 'qemu', 'simulated']).default('auto'),
        qemuBinary: z.string().min(1).default('qemu-system-x86_64'),
        /** `auto` probes KVM once (at start-up, with the first image's kernel) and falls back to TCG. */
        accelerator: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
        /** Where VM images live: `<imagesDir>/<image>/` holds `vmlinux`, optionally `initramfs.cpio.gz` and `cmdline`. Default `<dataDir>/images`. */
        imagesDir: z.string().min(1).optional(),
        /**
         * Stop the VMs when the node shuts down. By default they keep running (each QEMU has its
         * runtime dir under `<dataDir>/vms`) and the node takes them over when it starts again.
         */
        stopVmsOnShutdown: z.boolean().default(false),
      })
      .strict()
      .default({}),
    /** The migration data path (AMST over mutual TLS) and this node's chunk store. */
    migration: z
      .object({
        /** The address sinks listen on; defaults to peer.host. */
        host: host.optional(),
        /** The address sources are told to dial, when it differs from host. */
        advertiseHost: host.optional(),
        /** The chunk store's budget; it evicts least recently used chunks beyond it. */
        chunkStoreMiB: z.number().int().positive().default(4096),
        /** How long a sink waits for a lost source before it gives up. */
        orphanTimeoutMs: z.number().int().positive().default(10_000),
      })
      .strict()
      .default({}),
    /** Fault injection for tests and demos: one-way delay added to every Raft message this node sends. */
    faults: z
      .object({ peerDelayMs: z.number().int().min(0).max(10_000).default(0) })
      .strict()
      .default({}),
    /** How long shutdown waits for in-flight requests before cutting them off. */
    shutdownTimeoutMs: z.number().int().positive().default(10_000),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.join !== undefined && c.joinToken === undefined) {
      ctx.addIssue({ code: 'custom', path: ['joinToken'], message: 'is required when join is set' });
    }
    if (c.raft.heartbeatTicks >= c.raft.electionTicks) {
      ctx.addIssue({
        code: 'custom',
        path: ['raft', 'heartbeatTicks'],
        message: 'must be less than electionTicks',
      });
    }
    if (c.raft.minTickMs > c.raft.maxTickMs) {
      ctx.addIssue({ code: 'custom', path: ['raft', 'minTickMs'], message: 'must not exceed maxTickMs' });
    }
  });

export type NodeConfig = z.output<typeof nodeConfigSchema>;
/** A partial config as a file, the environment or flags give it. */
export type NodeConfigInput = z.input<typeof nodeConfigSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'ERR_CONFIG';

  constructor(
    /** The dotted key at fault, e.g. `api.port`. */
    readonly key: string,
    detail: string,
  ) {
    super(`config: ${key ? `${key}: ` : ''}${detail}`);
  }
}

type Leaf = { path: string[]; kind: 'number' | 'boolean' | 'text' };

/** Every settable key of the schema, with whether its value is a number (to coerce text from env and flags). */
function leaves(schema: z.ZodTypeAny, path: string[] = []): Leaf[] {
  let s: z.ZodTypeAny = schema;
  for (;;) {
    if (s instanceof z.ZodEffects) s = s.innerType();
    else if (s instanceof z.ZodDefault) s = s._def.innerType;
    else if (s instanceof z.ZodOptional) s = s.unwrap();
    else break;
  }
  if (s instanceof z.ZodObject) {
    return Object.entries(s.shape as Record<string, z.ZodTypeAny>).flatMap(([k, v]) =>
      leaves(v, [...path, k]),
    );
  }
  return [
    { path, kind: s instanceof z.ZodNumber ? 'number' : s instanceof z.ZodBoolean ? 'boolean' : 'text' },
  ];
}

const LEAVES = leaves(nodeConfigSchema);
const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
const kebab = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/** `api.port` ↔ `DWCP_API_PORT`, `grpcApi.port` ↔ `DWCP_GRPC_API_PORT`. */
export const envName = (leaf: readonly string[]) => `DWCP_${leaf.map(snake).join('_')}`;
/** `api.port` ↔ `--api-port` (the dotted `--api.port` is accepted too). */
export const flagName = (leaf: readonly string[]) => `--${leaf.map(kebab).join('-')}`;

function coerce(leaf: Leaf, text: string): unknown {
  if (leaf.kind === 'number' && text.trim() !== '' && Number.isFinite(Number(text))) return Number(text);
  if (leaf.kind === 'boolean' && (text === 'true' || text === 'false')) return text === 'true';
  return text;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? merge(b, v) : v;
  }
  return out;
}

export function configFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const leaf of LEAVES) {
    const value = env[envName(leaf.path)];
    if (value !== undefined) setPath(out, leaf.path, coerce(leaf, value));
  }
  return out;
}

export interface ParsedFlags {
  configFile?: string;
  values: Record<string, unknown>;
}

/**
 * Reads `--key value`, `--key=value` and `--config <file>`, and a boolean key's bare `--key` as
 * true; an unknown flag is a config error.
 */
export function configFromFlags(argv: readonly string[]): ParsedFlags {
  const byFlag = new Map<string, Leaf>();
  for (const leaf of LEAVES) {
    byFlag.set(flagName(leaf.path), leaf);
    byFlag.set(`--${leaf.path.join('.')}`, leaf);
  }
  const parsed: ParsedFlags = { values: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const takeValue = (): string => {
      if (eq >= 0) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--'))
        throw new ConfigError(flag.slice(2), 'flag needs a value');
      i += 1;
      return next;
    };
    if (flag === '--config') {
      parsed.configFile = takeValue();
      continue;
    }
    const leaf = byFlag.get(flag);
    if (leaf === undefined) throw new ConfigError(flag.replace(/^-+/, ''), `unknown flag ${flag}`);
    const bare = eq < 0 && (argv[i + 1] === undefined || (argv[i + 1] as string).startsWith('--'));
    setPath(parsed.values, leaf.path, leaf.kind === 'boolean' && bare ? true : coerce(leaf, takeValue()));
  }
  return parsed;
}

export function configFromFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('', `cannot read ${path}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = /\.ya?ml$/i.test(extname(path)) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      '',
      `${path} is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(e as Error).message}`,
    );
  }
  if (data === null || data === undefined) return {};
  if (!isPlainObject(data)) throw new ConfigError('', `${path} must hold an object`);
  return data;
}

/** Validates a merged raw config; the first problem becomes a ConfigError naming its key. */
export function parseNodeConfig(raw: unknown): NodeConfig {
  const result = nodeConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0] as z.ZodIssue;
  if (issue.code === 'unrecognized_keys') {
    const key = [...issue.path, issue.keys[0] ?? ''].join('.');
    throw new ConfigError(key, 'unknown key');
  }
  throw new ConfigError(issue.path.join('.'), issue.message);
}

export interface ConfigSources {
  argv?: readonly string[];
  env?: NodeJS.ProcessEnv;
}

/** flags > env > file > defaults. */
export function loadNodeConfig({ argv = [], env = {} }: ConfigSources): NodeConfig {
  const flags = configFromFlags(argv);
  const file = flags.configFile ?? env.DWCP_CONFIG;
  const fromFile = file === undefined ? {} : configFromFile(file);
  return parseNodeConfig(merge(merge(fromFile, configFromEnv(env)), flags.values));
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|\[::1\]|localhost)$/i;

export function isLoopback(h: string): boolean {
  return LOOPBACK.test(h);
}

/** The URL this node's REST API is reached at: https unless it listens on loopback only. */
export function apiUrlOf(config: NodeConfig): string {
  if (config.api.advertiseUrl) return config.api.advertiseUrl;
  const scheme = isLoopback(config.api.host) ? 'http' : 'https';
  const h = config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host;
  return `${scheme}://${h}:${config.api.port}`;
}
