import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { clusterInit } from './cluster-init';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('dwcp cluster init', () => {
  it('creates the CA, the tokens (0600) and membership once, and refuses a second init', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dwcp-init-'));
    dirs.push(dir);
    const lines: string[] = [];
    clusterInit({ dataDir: dir, nodeName: 'alpha', clusterName: 'lab' }, (l) => lines.push(l));
    const admin = readFileSync(join(dir, 'cluster', 'admin.token'), 'utf8').trim();
    expect(admin).toMatch(/^dwcp_admin_[A-Za-z0-9_-]{43}$/);
    expect(lines.join('\n')).toContain(admin);
    for (const secret of ['admin.token', 'join.token', 'ca.key', 'node.key']) {
      expect(statSync(join(dir, 'cluster', secret)).mode & 0o077).toBe(0);
    }
    expect(JSON.parse(readFileSync(join(dir, 'cluster', 'member.json'), 'utf8'))).toMatchObject({
      clusterName: 'lab',
      nodeName: 'alpha',
      raftId: 1,
      bootstrap: true,
    });
    expect(() =>
      clusterInit({ dataDir: dir, nodeName: 'alpha', clusterName: 'lab' }, () => undefined),
    ).toThrow(expect.objectContaining({ code: 'ERR_ALREADY_INITIALIZED' }));
  });
});
