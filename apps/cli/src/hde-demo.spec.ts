import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkStore, vmLikeData } from '@novacron/hde';
import { afterEach, describe, expect, it } from 'vitest';
import { runHdeDemo, transfer } from './hde-demo';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'dwcp-hde-demo-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('dwcp demo-hde --data-dir', () => {
  it('sends only what an empty store lacks, and says nothing of the project plans', async () => {
    const lines: string[] = [];
    const [first] = await runHdeDemo({ sizeMib: 8, dataDir: tempDir() }, (l) => lines.push(l));
    expect(lines.join('\n')).not.toMatch(/P4|arrives with/);
    expect(lines.join('\n')).toMatch(/first send \(empty dest\)/);
    expect(first?.dedupBytes ?? 0).toBeLessThan((first?.bytesIn ?? 0) / 2);
  });

  it("dedups the first send against the chunks a node's store already holds", async () => {
    const dataDir = tempDir();
    // A node's store as ChunkStoreModule opens it (<dataDir>/chunks, no on-disk codec), after it
    // received this image once.
    const nodeStore = ChunkStore.open(join(dataDir, 'chunks'), 1024 * MiB);
    await transfer(vmLikeData(8 * MiB, 42), nodeStore);
    const held = nodeStore.count;
    expect(held).toBeGreaterThan(0);

    const lines: string[] = [];
    const [first] = await runHdeDemo({ sizeMib: 8, dataDir }, (l) => lines.push(l));
    expect(lines.join('\n')).toContain(`holding ${held} chunks`);
    expect(lines.join('\n')).toContain(`first send (dest has ${held})`);
    expect(first?.dedupBytes ?? 0).toBeGreaterThan((first?.bytesIn ?? 0) * 0.9);
    expect(first?.bytesOnWire ?? Number.POSITIVE_INFINITY).toBeLessThan((first?.bytesIn ?? 0) * 0.05);
  });
});
