import { describe, expect, it } from 'vitest';
import { Feed } from './feed';
import { LineSplitter, waitForLine } from './serial-console';

describe('LineSplitter', () => {
  it('cuts at newlines across chunks, drops tty carriage returns and keeps split UTF-8 whole', () => {
    const splitter = new LineSplitter();
    const bytes = new TextEncoder().encode('DWCP-HEARTBEAT seq=1\r\nvm→ok\r\npart');
    expect(splitter.push(bytes.subarray(0, 10))).toEqual([]);
    expect(splitter.push(bytes.subarray(10, 25))).toEqual(['DWCP-HEARTBEAT seq=1']);
    expect(splitter.push(bytes.subarray(25))).toEqual(['vm→ok']);
    expect(splitter.flush()).toEqual(['part']);
    expect(splitter.flush()).toEqual([]);
  });
});

describe('Feed and waitForLine', () => {
  it('gives each subscriber everything pushed after it subscribed, and replays on request', async () => {
    const feed = new Feed<string>();
    feed.push('DWCP-READY fill_mib=16 md5=x');
    const late = feed.subscribe();
    const replaying = feed.subscribe({ replay: true });
    feed.push('DWCP-HEARTBEAT seq=0');
    feed.push('DWCP-HEARTBEAT seq=1');
    expect((await waitForLine(late, /seq=(\d+)/, { timeoutMs: 100 }))[1]).toBe('0');
    expect((await waitForLine(late, /seq=(\d+)/, { timeoutMs: 100 }))[1]).toBe('1');
    expect((await waitForLine(replaying, /READY/, { timeoutMs: 100 }))[0]).toBe('READY');
  });

  it('times out, or reports the end of the console, as typed errors', async () => {
    const feed = new Feed<string>();
    await expect(waitForLine(feed.subscribe(), /never/, { timeoutMs: 20 })).rejects.toMatchObject({
      code: 'ERR_HV_TIMEOUT',
    });
    const lines = feed.subscribe();
    const waiting = waitForLine(lines, /never/, { timeoutMs: 1000 });
    feed.end();
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_HV_VM_EXITED' });
  });

  it('drops a slow reader oldest values past its bound; after the end, late subscribers get only the last', async () => {
    const feed = new Feed<number>(2, 3);
    const slow = feed.subscribe();
    for (let i = 0; i < 5; i++) feed.push(i);
    feed.end(99);
    const read: number[] = [];
    for await (const value of slow) read.push(value);
    expect(read).toEqual([3, 4, 99]);
    const late: number[] = [];
    for await (const value of feed.subscribe()) late.push(value);
    expect(late).toEqual([99]);
  });
});
