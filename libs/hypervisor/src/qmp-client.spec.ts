import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HypervisorError, QmpError } from './errors';
import type { QmpEvent } from './events';
import { QmpClient } from './qmp-client';

const GREETING = {
  QMP: {
    version: { qemu: { micro: 22, minor: 2, major: 7 }, package: 'Debian 1:7.2+dfsg-7' },
    capabilities: [],
  },
};

interface Request {
  execute: string;
  arguments?: Record<string, unknown>;
  id: number;
}

/** A QMP server that speaks the wire protocol and answers as the test says. */
class FakeQemu {
  readonly requests: Request[] = [];
  socket: Socket | undefined;
  private server: Server | undefined;

  constructor(private readonly answer: (request: Request, send: (message: object) => void) => void) {}

  listen(path: string): Promise<void> {
    this.server = createServer((socket) => {
      this.socket = socket;
      const send = (message: object) => socket.write(`${JSON.stringify(message)}\r\n`);
      send(GREETING);
      let buffered = '';
      socket.on('data', (chunk) => {
        buffered += chunk.toString();
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const request = JSON.parse(buffered.slice(0, nl)) as Request;
          buffered = buffered.slice(nl + 1);
          this.requests.push(request);
          if (request.execute === 'qmp_capabilities') send({ return: {}, id: request.id });
          else this.answer(request, send);
        }
      });
    });
    return new Promise((resolve) => this.server?.listen(path, resolve));
  }

  close(): Promise<void> {
    this.socket?.destroy();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

describe('QmpClient', () => {
  let dir: string;
  let fake: FakeQemu | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qmp-client-'));
  });
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(answer: ConstructorParameters<typeof FakeQemu>[0]): Promise<QmpClient> {
    fake = new FakeQemu(answer);
    await fake.listen(join(dir, 'qmp.sock'));
    return QmpClient.connect(join(dir, 'qmp.sock'), { commandTimeoutMs: 1000 });
  }

  it('negotiates capabilities, reads the version and matches replies to calls by id', async () => {
    const held: [Request, (m: object) => void][] = [];
    const client = await serve((request, send) => {
      held.push([request, send]);
      // Answer the pair in reverse order: ids, not order, must pair them up.
      if (held.length === 2) for (const [r, s] of held.reverse()) s({ return: { for: r.execute }, id: r.id });
    });
    expect(client.version).toEqual({ major: 7, minor: 2, micro: 22, package: 'Debian 1:7.2+dfsg-7' });
    expect(fake?.requests[0]).toMatchObject({ execute: 'qmp_capabilities' });
    const [a, b] = await Promise.all([
      client.execute('query-status'),
      client.execute('query-migrate', { x: 1 }),
    ]);
    expect(a).toEqual({ for: 'query-status' });
    expect(b).toEqual({ for: 'query-migrate' });
    expect(fake?.requests[2]).toMatchObject({ execute: 'query-migrate', arguments: { x: 1 } });
    client.close();
  });

  it('turns an error reply into a QmpError with QEMU class and text', async () => {
    const client = await serve((request, send) =>
      send({
        error: { class: 'CommandNotFound', desc: 'The command nope has not been found' },
        id: request.id,
      }),
    );
    const error = await client.execute('nope').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QmpError);
    expect(error).toMatchObject({
      class: 'CommandNotFound',
      desc: 'The command nope has not been found',
      command: 'nope',
    });
    client.close();
  });

  it('hands events to listeners, between and around replies', async () => {
    const client = await serve((request, send) => {
      send({ event: 'STOP', timestamp: { seconds: 1, microseconds: 500 } });
      send({ return: {}, id: request.id });
      send({ event: 'MIGRATION', data: { status: 'active' }, timestamp: { seconds: 2, microseconds: 0 } });
    });
    const events: QmpEvent[] = [];
    client.onEvent((event) => events.push(event));
    await client.execute('stop');
    await expect.poll(() => events.length).toBe(2);
    expect(events.map((e) => e.event)).toEqual(['STOP', 'MIGRATION']);
    expect(events[0]?.data).toEqual({});
    expect(events[1]?.data).toEqual({ status: 'active' });
    client.close();
  });

  it('rejects pending and later calls with a typed error when the connection drops', async () => {
    const client = await serve(() => fake?.socket?.destroy());
    const closed = new Promise<HypervisorError>((resolve) => client.onClose(resolve));
    const error = await client.execute('migrate', { uri: 'unix:/x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HypervisorError);
    expect(error).toMatchObject({ code: 'ERR_HV_QMP_DISCONNECTED' });
    expect((error as Error).message).toMatch(/migrate was pending/);
    expect((await closed).code).toBe('ERR_HV_QMP_DISCONNECTED');
    expect(client.isClosed).toBe(true);
    await expect(client.execute('query-status')).rejects.toMatchObject({ code: 'ERR_HV_QMP_DISCONNECTED' });
  });

  it('closes on a line that is not QMP and times out a call with no reply', async () => {
    const client = await serve((request, send) => {
      if (request.execute === 'garbage') fake?.socket?.write('this is not json\r\n');
      if (request.execute === 'late') setTimeout(() => send({ return: {}, id: request.id }), 1500);
    });
    await expect(client.execute('late', undefined, { timeoutMs: 100 })).rejects.toMatchObject({
      code: 'ERR_HV_TIMEOUT',
    });
    await expect(client.execute('garbage')).rejects.toMatchObject({ code: 'ERR_HV_QMP_PROTOCOL' });
  });

  it('fails to connect where nothing listens', async () => {
    await expect(QmpClient.connect(join(dir, 'absent.sock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
