import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from './exit-codes';
import { freePort, type RealNode, startRealNode } from './testing/real-node';
import { dwcp } from './testing/test-io';

describe('dwcp vm against a real single-node cluster', () => {
  let node: RealNode;
  // The token comes from the data directory (cluster/admin.token), as it does for an operator on the node's host.
  let api: string[];
  beforeAll(async () => {
    node = await startRealNode();
    api = ['--api', node.apiUrl, '--data-dir', node.dataDir];
  }, 60_000);
  afterAll(() => node?.close());

  it('creates, lists, gets, starts, stops and deletes a VM by name and by id', async () => {
    const created = await dwcp([
      'vm',
      'create',
      '--name',
      'web-1',
      '--image',
      'debian-12',
      '--vcpus',
      '2',
      '--memory-mib',
      '256',
      '--label',
      'tier=web',
      '--label',
      'env=lab',
      '--node',
      'cli-test',
      '--json',
      ...api,
    ]);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    const vm = JSON.parse(created.stdout);
    expect(vm).toMatchObject({
      name: 'web-1',
      image: 'debian-12',
      vcpus: 2,
      memoryMiB: 256,
      state: 'stopped',
      nodeId: 'node-1',
      labels: { tier: 'web', env: 'lab' },
    });

    const list = await dwcp(['vm', 'list', ...api]);
    expect(list.code).toBe(0);
    const [header, row] = list.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID\s+NAME\s+STATE\s+STATUS\s+NODE\s+VCPUS\s+MEMORY\s+IMAGE$/);
    expect(row?.split(/\s{2,}/)).toEqual([
      vm.id,
      'web-1',
      'stopped',
      '-',
      'node-1',
      '2',
      '256 MiB',
      'debian-12',
    ]);

    const byName = await dwcp(['vm', 'get', 'web-1', ...api]);
    expect(byName.code).toBe(0);
    expect(byName.stdout).toContain(`id:      ${vm.id}`);
    expect(byName.stdout).toContain('labels:  tier=web,env=lab');

    const started = await dwcp(['vm', 'start', 'web-1', ...api]);
    expect(started.code).toBe(0);
    expect(started.stdout).toContain('state:   running');
    const stopped = await dwcp(['vm', 'stop', vm.id, '--json', ...api]);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ id: vm.id, state: 'stopped' });

    const deleted = await dwcp(['vm', 'delete', 'web-1', ...api]);
    expect(deleted).toMatchObject({ code: 0, stdout: `deleted VM web-1 (${vm.id})\n` });
    expect((await dwcp(['vm', 'list', ...api])).stdout).toBe('no VMs\n');
  });

  it('creates and starts in one go with --start', async () => {
    const r = await dwcp([
      'vm',
      'create',
      '--name',
      'db-1',
      '--image',
      'debian-12',
      '--vcpus',
      '1',
      '--memory-mib',
      '128',
      '--start',
      ...api,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('state:   running');
    expect((await dwcp(['vm', 'delete', 'db-1', ...api])).code).toBe(0);
  });

  it('shows what the node observed: failed with the reason for a missing image, running for a good one', async () => {
    // Where QEMU runs the node uses it, and it needs a real kernel: the test guest's, once built.
    const guest = resolve(__dirname, '../../../test/guest/out');
    const image = join(node.dataDir, 'images', 'plain');
    mkdirSync(image, { recursive: true });
    if (existsSync(join(guest, 'vmlinux'))) {
      for (const f of ['vmlinux', 'initramfs.cpio.gz']) symlinkSync(join(guest, f), join(image, f));
    } else writeFileSync(join(image, 'vmlinux'), 'the simulated driver boots nothing\n');
    const create = (name: string, img: string) =>
      dwcp([
        'vm',
        'create',
        '--name',
        name,
        '--image',
        img,
        '--vcpus',
        '1',
        '--memory-mib',
        '64',
        '--start',
        ...api,
      ]);
    expect((await create('web', 'nope')).code).toBe(0);
    expect((await create('good', 'plain')).code).toBe(0);
    const until = async (vm: string, text: string) => {
      const end = Date.now() + 20_000;
      for (;;) {
        const r = await dwcp(['vm', 'get', vm, ...api]);
        if (r.stdout.includes(text)) return r.stdout;
        if (Date.now() > end) throw new Error(`vm get ${vm} never showed ${text}:\n${r.stdout}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const failed = await until('web', 'status:  failed (image nope is not on this node');
    expect(failed).toContain('state:   running');
    expect(failed).toMatch(/since: {3}\S+ \(reported by node-1\)/);
    await until('good', 'status:  running');
    const json = JSON.parse((await dwcp(['vm', 'get', 'web', '--json', ...api])).stdout);
    expect(json.status).toMatchObject({ phase: 'failed', nodeId: 'node-1' });
    expect(json.status.reason).toMatch(/^image nope is not on this node/);

    const rows = (await dwcp(['vm', 'list', ...api])).stdout.trimEnd().split('\n').slice(1);
    const phases = Object.fromEntries(rows.map((r) => r.split(/\s{2,}/)).map((c) => [c[1], c.slice(2, 4)]));
    expect(phases).toMatchObject({ web: ['running', 'failed'], good: ['running', 'running'] });

    // Stopped, it says so; both leave for the next test.
    await dwcp(['vm', 'stop', 'web', ...api]);
    await until('web', 'status:  stopped');
    for (const name of ['web', 'good']) expect((await dwcp(['vm', 'delete', name, ...api])).code).toBe(0);
  });

  it('exits 3 for a VM that does not exist, by id or by name', async () => {
    for (const ref of ['vm-doesnotexist', 'no-such-vm']) {
      const r = await dwcp(['vm', 'get', ref, ...api]);
      expect(r.code).toBe(EXIT.notFound);
      expect(r.stderr).toBe(`dwcp: ERR_NOT_FOUND: no VM has the id or name ${ref}\n`);
    }
    expect((await dwcp(['vm', 'stop', 'vm-doesnotexist', ...api])).code).toBe(EXIT.notFound);
  });

  it('exits 2 with the field the API refuses, and for a --vcpus that is not a number', async () => {
    const base = ['vm', 'create', '--name', 'x', '--image', 'i', '--memory-mib', '64', ...api];
    const zero = await dwcp([...base, '--vcpus', '0']);
    expect(zero.code).toBe(EXIT.usage);
    expect(zero.stderr).toContain('dwcp: ERR_INVALID_ARGUMENT: invalid body: vcpus:');
    expect(zero.stderr).toMatch(/\n {2}vcpus: Number must be greater than or equal to 1\n$/);

    const word = await dwcp([...base, '--vcpus', 'two']);
    expect(word.code).toBe(EXIT.usage);
    expect(word.stderr).toContain("option '--vcpus <n>' argument 'two' is invalid. must be a whole number");

    const missing = await dwcp(['vm', 'create', '--name', 'x', ...api]);
    expect(missing.code).toBe(EXIT.usage);
    expect(missing.stderr).toContain("required option '--image <image>' not specified");
  });

  it('declares disks with --disk (vda, vdb, ...), shows them, and names the field the API refuses', async () => {
    const base = ['vm', 'create', '--image', 'debian-12', '--vcpus', '1', '--memory-mib', '128', ...api];
    const created = await dwcp([
      ...base,
      '--name',
      'db-1',
      '--disk',
      '4G,image=debian-base',
      '--disk',
      '512M,format=raw,image=debian-base',
      '--json',
    ]);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(created.stdout).disks).toEqual([
      { id: 'vda', sizeBytes: 4 * 2 ** 30, format: 'qcow2', image: 'debian-base', bus: 'virtio' },
      { id: 'vdb', sizeBytes: 512 * 2 ** 20, format: 'raw', image: 'debian-base', bus: 'virtio' },
    ]);
    const shown = await dwcp(['vm', 'get', 'db-1', ...api]);
    expect(shown.stdout).toMatch(/disk vda:\s+4 GiB qcow2 virtio on debian-base\n/);
    expect(shown.stdout).toMatch(/disk vdb:\s+512 MiB raw virtio on debian-base\n/);

    const size = await dwcp([...base, '--name', 'db-2', '--disk', '4X']);
    expect(size.code).toBe(EXIT.usage);
    expect(size.stderr).toContain('must be a whole number with M, G or T');
    const zero = await dwcp([...base, '--name', 'db-3', '--disk', '0G']);
    expect(zero.code).toBe(EXIT.usage);
    expect(zero.stderr).toContain('must be a whole number with M, G or T');
    const huge = await dwcp([...base, '--name', 'db-3', '--disk', '4096T']);
    expect(huge.code).toBe(EXIT.usage);
    expect(huge.stderr).toMatch(/disks\.0\.sizeBytes: Number must be less than or equal to/);
    const unknownKey = await dwcp([...base, '--name', 'db-4', '--disk', '1G,id=vdx']);
    expect(unknownKey.code).toBe(EXIT.usage);
    expect(unknownKey.stderr).toContain('"id=vdx" is not image=NAME or format=qcow2|raw');
    const list = await dwcp(['vm', 'list', '--json', ...api]);
    expect(JSON.parse(list.stdout).map((v: { name: string }) => v.name)).not.toContain('db-2');
  });

  it('exits 4 for a name that is taken, naming the field', async () => {
    const args = [
      'vm',
      'create',
      '--name',
      'twin',
      '--image',
      'i',
      '--vcpus',
      '1',
      '--memory-mib',
      '64',
      ...api,
    ];
    expect((await dwcp(args)).code).toBe(0);
    const again = await dwcp(args);
    expect(again.code).toBe(EXIT.conflict);
    expect(again.stderr).toMatch(
      /^dwcp: ERR_CONFLICT: a VM named twin already exists \(vm-[a-z0-9]+\) \(name\)\n$/,
    );
    await dwcp(['vm', 'delete', 'twin', ...api]);
  });

  it('exits 5 for a wrong token, and says so when no token was found at all', async () => {
    const wrong = await dwcp(['vm', 'list', '--api', node.apiUrl, '--token', 'dwcp_admin_wrong']);
    expect(wrong.code).toBe(EXIT.auth);
    expect(wrong.stderr).toBe('dwcp: ERR_UNAUTHENTICATED: invalid or revoked token\n');

    const none = await dwcp(['vm', 'list', '--api', node.apiUrl, '--data-dir', '/nonexistent']);
    expect(none.code).toBe(EXIT.auth);
    expect(none.stderr).toContain('no token was given');
  });

  it('takes the API URL and token from DWCP_API_URL and DWCP_TOKEN', async () => {
    const r = await dwcp(['vm', 'list'], {
      env: { DWCP_API_URL: node.apiUrl, DWCP_TOKEN: node.adminToken, DWCP_DATA_DIR: '/nonexistent' },
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
  });

  it('exits 6 when nothing listens at the API URL', async () => {
    const port = await freePort();
    const r = await dwcp(['vm', 'list', '--api', `http://127.0.0.1:${port}`, '--token', 't']);
    expect(r.code).toBe(EXIT.unavailable);
    expect(r.stderr).toBe(
      `dwcp: ERR_UNAVAILABLE: cannot reach the API at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
  });

  it('exits 2 for an --api that is not an http(s) URL', async () => {
    const r = await dwcp(['vm', 'list', '--api', 'ftp://x', '--token', 't']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toBe('dwcp: ERR_USAGE: --api: ftp://x must be an http:// or https:// URL\n');
  });
});

describe('dwcp vm against a real node serving its API over TLS', () => {
  let node: RealNode;
  beforeAll(async () => {
    node = await startRealNode('0.0.0.0');
  }, 60_000);
  afterAll(() => node?.close());

  it('verifies the API against the cluster CA in --data-dir, and exits 5 against another CA', async () => {
    expect(node.apiUrl).toMatch(/^https:/);
    const ok = await dwcp(['vm', 'list', '--api', node.apiUrl, '--data-dir', node.dataDir]);
    expect(ok).toMatchObject({ code: 0, stdout: 'no VMs\n', stderr: '' });

    const other = await startRealNode();
    try {
      const r = await dwcp([
        'vm',
        'list',
        '--api',
        node.apiUrl,
        '--token',
        node.adminToken,
        '--ca',
        `${other.dataDir}/cluster/ca.pem`,
      ]);
      expect(r.code).toBe(EXIT.auth);
      expect(r.stderr).toContain('dwcp: ERR_TLS: the API at');
      expect(r.stderr).toContain(`does not verify against ${other.dataDir}/cluster/ca.pem`);
    } finally {
      await other.close();
    }
  });
});
