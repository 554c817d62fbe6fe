import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listenerTls } from './listener-tls';
import { apiUrlOf, ConfigError, envName, flagName, loadNodeConfig, parseNodeConfig } from './node-config';

const dir = mkdtempSync(join(tmpdir(), 'dwcp-config-'));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('node config', () => {
  it('has the documented defaults', () => {
    const c = parseNodeConfig({});
    expect(c).toMatchObject({
      dataDir: './.dwcp',
      logLevel: 'info',
      api: { host: '127.0.0.1', port: 7700 },
      peer: { host: '127.0.0.1', port: 7701 },
      grpcApi: { port: 7702 },
      raft: { electionTicks: 10, heartbeatTicks: 1 },
    });
    expect(c.nodeName).toMatch(/^[a-z0-9-]+$/);
    expect(c.capacity.vcpus).toBeGreaterThan(0);
    expect(apiUrlOf(c)).toBe('http://127.0.0.1:7700');
  });

  it('layers flags over env over file over defaults', () => {
    const json = file(
      'c.json',
      JSON.stringify({ nodeName: 'from-file', api: { port: 1000, host: '127.0.0.2' }, logLevel: 'warn' }),
    );
    const env = { DWCP_API_PORT: '2000', DWCP_LOG_LEVEL: 'debug', DWCP_RAFT_ELECTION_TICKS: '20' };
    const c = loadNodeConfig({ argv: ['--config', json, '--api-port', '3000', '--raft.minTickMs=10'], env });
    expect(c.api.port).toBe(3000);
    expect(c.api.host).toBe('127.0.0.2');
    expect(c.logLevel).toBe('debug');
    expect(c.nodeName).toBe('from-file');
    expect(c.raft).toMatchObject({ electionTicks: 20, minTickMs: 10 });
    expect(loadNodeConfig({ argv: ['--config', json], env: {} }).api.port).toBe(1000);
    expect(loadNodeConfig({ argv: ['--config', json], env }).api.port).toBe(2000);
  });

  it('leaves VMs running at shutdown unless a boolean flag or variable says to stop them', () => {
    expect(loadNodeConfig({}).hypervisor.stopVmsOnShutdown).toBe(false);
    const bare = loadNodeConfig({ argv: ['--hypervisor-stop-vms-on-shutdown', '--log-level', 'warn'] });
    expect(bare.hypervisor.stopVmsOnShutdown).toBe(true);
    expect(bare.logLevel).toBe('warn');
    expect(
      loadNodeConfig({ argv: ['--hypervisor-stop-vms-on-shutdown', 'false'] }).hypervisor.stopVmsOnShutdown,
    ).toBe(false);
    expect(
      loadNodeConfig({ env: { DWCP_HYPERVISOR_STOP_VMS_ON_SHUTDOWN: 'true' } }).hypervisor.stopVmsOnShutdown,
    ).toBe(true);
  });

  it('reads YAML files', () => {
    const yaml = file('c.yaml', 'dataDir: /var/lib/dwcp\ngrpcApi:\n  port: 9000\n');
    expect(loadNodeConfig({ argv: ['--config', yaml] })).toMatchObject({
      dataDir: '/var/lib/dwcp',
      grpcApi: { port: 9000 },
    });
  });

  it('names the bad key', () => {
    expect(configError(() => parseNodeConfig({ api: { port: 'http' } })).message).toBe(
      'config: api.port: Expected number, received string',
    );
    expect(configError(() => loadNodeConfig({ env: { DWCP_API_PORT: 'eighty' } })).message).toBe(
      'config: api.port: Expected number, received string',
    );
    expect(configError(() => loadNodeConfig({ argv: ['--peer-port', '99999'] })).key).toBe('peer.port');
    expect(configError(() => parseNodeConfig({ api: { prot: 1 } })).message).toBe(
      'config: api.prot: unknown key',
    );
    expect(configError(() => parseNodeConfig({ logLevel: 'loud' })).key).toBe('logLevel');
    expect(configError(() => parseNodeConfig({ join: 'https://10.0.0.1:7700' })).message).toBe(
      'config: joinToken: is required when join is set',
    );
    expect(configError(() => parseNodeConfig({ raft: { heartbeatTicks: 10 } })).key).toBe(
      'raft.heartbeatTicks',
    );
    expect(configError(() => loadNodeConfig({ argv: ['--colour', 'red'] })).message).toContain(
      'unknown flag --colour',
    );
    expect(configError(() => loadNodeConfig({ argv: ['--api-port'] })).key).toBe('api-port');
    expect(
      configError(() => loadNodeConfig({ argv: ['--config', file('bad.json', '{nope')] })).message,
    ).toContain('not valid JSON');
  });

  it('derives env and flag names from the keys', () => {
    expect(envName(['grpcApi', 'port'])).toBe('DWCP_GRPC_API_PORT');
    expect(envName(['dataDir'])).toBe('DWCP_DATA_DIR');
    expect(flagName(['raft', 'electionTicks'])).toBe('--raft-election-ticks');
  });

  it('refuses a non-loopback listener without the node certificate, naming the key', () => {
    const c = parseNodeConfig({ dataDir: dir, api: { host: '0.0.0.0' } });
    expect(listenerTls(c, 'api.host', '127.0.0.1')).toBeUndefined();
    const err = configError(() => listenerTls(c, 'api.host', c.api.host));
    expect(err.key).toBe('api.host');
    expect(err.message).toMatch(/^config: api\.host: 0\.0\.0\.0 is not a loopback address.*node\.pem/);
    expect(apiUrlOf(c)).toBe('https://0.0.0.0:7700');
  });
});
