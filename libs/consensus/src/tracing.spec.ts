import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AcpRuntime, DEFAULT_RAFT, startAcp } from './acp-node';

describe('ACP spans', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const dir = mkdtempSync(join(tmpdir(), 'acp-trace-'));
  let rt: AcpRuntime;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    rt = await startAcp(
      {
        dataDir: dir,
        nodeName: 'solo',
        clusterName: 'spec',
        peer: { host: '127.0.0.1', port: 0 },
        apiUrl: 'http://127.0.0.1:1',
        capacity: { vcpus: 2, memoryMiB: 1024 },
        raft: { ...DEFAULT_RAFT, minTickMs: 20 },
      },
      new Registry(),
    );
    // The first node registers itself once it leads; placement needs that record.
    while (!rt.replica.state.getNode('node-1')) await new Promise((r) => setTimeout(r, 20));
  });
  afterAll(async () => {
    await rt.close();
    trace.disable();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records a span per commit and per linearizable read, failed ones marked with their code', async () => {
    const vm = {
      type: 'vm.create',
      vmId: 'vm-traced',
      name: 'traced',
      image: 'i',
      vcpus: 1,
      memoryMiB: 64,
      labels: {},
    };
    await rt.store.execute({ ...vm, at: new Date().toISOString() });
    await expect(rt.store.execute({ ...vm, at: new Date().toISOString() })).rejects.toMatchObject({
      code: 'ERR_CONFLICT',
    });
    await rt.store.read((s) => s.getVm('vm-traced'));
    const spans = exporter.getFinishedSpans();
    const commits = spans.filter(
      (s) => s.name === 'acp.commit' && s.attributes['dwcp.command'] === 'vm.create',
    );
    expect(commits).toHaveLength(2);
    expect(commits[0]?.status.code).toBe(0);
    expect(commits[1]?.attributes['dwcp.error.code']).toBe('ERR_CONFLICT');
    expect(spans.some((s) => s.name === 'acp.read_index')).toBe(true);
  });
});
