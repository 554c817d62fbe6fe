/**
 * The JS runtime's connection rules at the end and the start of a transfer, over real sockets on
 * 127.0.0.1 with real mutual TLS (certificates from the `openssl` CLI, as in
 * `tls-transport.spec.ts`): a FIN's ack that comes on another connection than the FIN's, resets
 * right after the hello, and a sender that comes back to a transfer the listener completed.
 * The fronts here play the receiver (TLS as `node-b`) on the connections they break, and relay
 * every other connection to a real `listenJs` listener.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect, createServer as netCreateServer, type Server, type Socket } from 'node:net';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteQueue } from './byte-queue';
import { AmstError } from './error';
import { type Ack, encodeAck, encodeFin, FIN_SEQ, frameLength, parseFrame } from './frame';
import { encodeHello, HELLO_LEN, type Hello, parseHello } from './hello';
import { TestPki } from './test-pki';
import { clientTlsOptions, serverTlsOptions, type TlsIdentity } from './tls-identity';
import { type JsClientConnection, type JsIncomingStream, listenJs, sendJs } from './tls-transport';

const MiB = 1024 * 1024;
const HOST = '127.0.0.1';
/** Generous: the machine has two cores and a bench may run beside the tests. */
const TIMEOUT_MS = 120_000;

const pki = { ca: '', nodeB: { cert: '', key: '' }, nodeA: { cert: '', key: '' } };

let certs: TestPki | undefined;

beforeAll(() => {
  certs = new TestPki('amst-redial-');
  pki.ca = certs.ca('ca');
  pki.nodeB = certs.leaf('node-b', 'node-b', 'ca');
  pki.nodeA = certs.leaf('node-a', 'node-a', 'ca');
});

afterAll(() => certs?.remove());

const receiverId = (): TlsIdentity => ({ ca: pki.ca, ...pki.nodeB });
const senderId = (): TlsIdentity => ({ ca: pki.ca, ...pki.nodeA });
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function* chunksOf(data: Buffer, size = MiB): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function drain(stream: JsIncomingStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of stream) hash.update(piece);
  return hash.digest('hex');
}

async function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function listening(server: Server): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, HOST, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    });
  });
}

function closed(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** TLS as the receiver over `tcp`; resolves to the connection's hello once it is read. */
function readHello(tcp: Socket): Promise<{ tls: TLSSocket; hello: Hello; rest: ByteQueue }> {
  const tls = new TLSSocket(tcp, { isServer: true, ...serverTlsOptions(receiverId(), 10_000) });
  tls.on('error', () => {});
  const queue = new ByteQueue();
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      queue.push(chunk);
      if (queue.length < HELLO_LEN) return;
      tls.off('data', onData);
      const hello = parseHello(queue.peek(HELLO_LEN));
      queue.consume(HELLO_LEN);
      resolve({ tls, hello, rest: queue });
    };
    tls.on('data', onData);
    tls.once('close', () => reject(new Error('closed before its hello')));
  });
}

/**
 * A front for the listener on `target`: its first `count` connections are taken as the
 * receiver, and once all their hellos are in, all are reset at once (RST, no TLS close), before
 * anything on them could be acknowledged. Every later connection is relayed. `hellos` are the
 * reset connections' hellos.
 */
async function resetFirstAfterHello(target: number, count: number) {
  const hellos: Hello[] = [];
  const victims: Socket[] = [];
  let seen = 0;
  const server = netCreateServer((tcp) => {
    tcp.on('error', () => {});
    if (seen++ < count) {
      victims.push(tcp);
      readHello(tcp).then(
        ({ hello }) => {
          hellos.push(hello);
          if (hellos.length === count) for (const v of victims) v.resetAndDestroy();
        },
        () => {},
      );
      return;
    }
    const upstream = netConnect(target, HOST);
    upstream.on('error', () => tcp.destroy());
    tcp.on('close', () => upstream.destroy());
    upstream.on('close', () => tcp.destroy());
    tcp.pipe(upstream);
    upstream.pipe(tcp);
  });
  return { port: await listening(server), hellos, close: () => closed(server) };
}

describe('AMST JS: re-dials and the end of a transfer', () => {
  it(
    "completes when the FIN's ack comes on another connection after the FIN's connection closed",
    async () => {
      // The receiver here is scripted as the native one behaves: the FIN arrives on A before the
      // last data frame (on B) is acked; once the stream is whole it acks the FIN on B and
      // closes every connection; a connection to the finished session is dropped after its hello.
      const data = randomBytes(2 * 1024);
      const clients = new Map<number, JsClientConnection>();
      const clientClosed = new Map<number, Promise<void>>();
      const conns = new Map<number, TLSSocket>();
      const dataOn = new Map<number, number>();
      let finOn: number | null = null;
      let ended = false;
      let refusedAfterEnd = 0;
      const finish = async () => {
        if (finOn === null || dataOn.size < 2 || ended) return;
        ended = true;
        const a = finOn;
        const b = [...conns.keys()].find((i) => i !== a);
        expect(b).toBeDefined();
        if (b === undefined) return;
        // A goes first, with its data frame unacked: the sender must put that frame elsewhere.
        conns.get(a)?.destroy();
        await clientClosed.get(a);
        const bSeq = [...dataOn].find(([, on]) => on === b)?.[0];
        expect(bSeq).toBeDefined();
        const ack = (seq: number): Ack => ({ seq, cumulative: 2, window: 64 });
        const tls = conns.get(b);
        tls?.write(Buffer.concat([encodeAck(ack(bSeq ?? 0)), encodeAck(ack(FIN_SEQ))]));
        tls?.end();
      };
      const server = netCreateServer((tcp) => {
        tcp.on('error', () => {});
        readHello(tcp).then(
          ({ tls, hello, rest }) => {
            if (ended || conns.size >= 2) {
              refusedAfterEnd += 1;
              tcp.resetAndDestroy();
              return;
            }
            conns.set(hello.index, tls);
            const onBytes = () => {
              for (;;) {
                const len = frameLength(rest.peek(Math.min(rest.length, 14)), MiB);
                if (len === null || rest.length < len) break;
                const parsed = parseFrame(rest.peek(len), MiB);
                rest.consume(len);
                if (parsed?.frame.kind === 'data') dataOn.set(parsed.frame.seq, hello.index);
                if (parsed?.frame.kind === 'fin') finOn = hello.index;
              }
              void finish();
            };
            tls.on('data', (chunk: Buffer) => {
              rest.push(chunk);
              onBytes();
            });
            onBytes();
          },
          () => {},
        );
      });
      const port = await listening(server);
      try {
        // Both connections are up before the stream starts, so each carries one frame.
        async function* twoFrames(): AsyncGenerator<Uint8Array> {
          await until(() => clients.size === 2 && [...clients.values()].every((c) => c.socket.authorized));
          yield data;
        }
        const sent = await sendJs(
          {
            host: HOST,
            port,
            serverName: 'node-b',
            identity: senderId(),
            streams: 2,
            sender: { frameSize: 1024 },
            onConnection: (c) => {
              clients.set(c.index, c);
              clientClosed.set(c.index, new Promise((r) => c.socket.once('close', () => r())));
            },
          },
          twoFrames(),
        );
        expect(sent.bytes).toBe(data.length);
        expect(ended).toBe(true);
        expect(refusedAfterEnd).toBe(0);
      } finally {
        for (const c of conns.values()) c.destroy();
        await closed(server);
      }
    },
    TIMEOUT_MS,
  );

  /** 8 MiB over `streams` connections whose first ones are reset right after their hellos. */
  async function sendThroughResets(streams: number, maxDialFailures?: number) {
    const listener = await listenJs({ host: HOST, port: 0, identity: receiverId() });
    const front = await resetFirstAfterHello(listener.port, streams);
    try {
      const data = randomBytes(8 * MiB);
      const opened: number[] = [];
      const [sent, got] = await Promise.all([
        sendJs(
          {
            host: HOST,
            port: front.port,
            serverName: 'node-b',
            identity: senderId(),
            streams,
            ...(maxDialFailures === undefined ? {} : { maxDialFailures }),
            onConnection: (c) => opened.push(c.index),
          },
          chunksOf(data),
        ),
        listener.accept().then(drain),
      ]);
      expect(got).toBe(sha256(data));
      expect(sent.bytes).toBe(data.length);
      return { reset: front.hellos.map((h) => h.index).sort(), opened };
    } finally {
      await front.close();
      await listener.close();
    }
  }

  it(
    'the only connection reset right after its hello is re-dialed and nothing is lost',
    async () => {
      const { reset, opened } = await sendThroughResets(1);
      expect(reset).toEqual([0]);
      expect(opened).toEqual([0, 1]);
    },
    TIMEOUT_MS,
  );

  it(
    'connections lost at the same moment cost one attempt, and re-dials follow',
    async () => {
      const { reset, opened } = await sendThroughResets(4, 2);
      expect(reset).toEqual([0, 1, 2, 3]);
      // The first re-dial went alone (one at a time while dials fail), the rest once it worked.
      expect(opened.slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
    },
    TIMEOUT_MS,
  );

  it(
    'when re-dials run out the error is ERR_AMST_NO_CONNECTION and says what happened',
    async () => {
      // Every connection is reset right after its hello.
      const server = netCreateServer((tcp) => {
        tcp.on('error', () => {});
        readHello(tcp).then(
          () => tcp.resetAndDestroy(),
          () => {},
        );
      });
      const port = await listening(server);
      try {
        const opened: number[] = [];
        let err: unknown = null;
        try {
          await sendJs(
            {
              host: HOST,
              port,
              serverName: 'node-b',
              identity: senderId(),
              streams: 1,
              maxDialFailures: 3,
              onConnection: (c) => opened.push(c.index),
            },
            chunksOf(randomBytes(MiB)),
          );
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(AmstError);
        expect(err).toMatchObject({ code: 'ERR_AMST_NO_CONNECTION' });
        const message = (err as AmstError).message;
        expect(message).toContain('connection 2 was lost before anything on it was acknowledged');
        expect(message).toContain('3 attempts in a row failed');
        expect(message).toContain('the last error: ECONNRESET');
        expect(opened).toEqual([0, 1, 2]);
      } finally {
        await closed(server);
      }
    },
    TIMEOUT_MS,
  );

  it(
    'a listener answers a re-dial of a transfer it completed with its final ack, and closes cleanly',
    async () => {
      const peerErrors: AmstError[] = [];
      const listener = await listenJs({
        host: HOST,
        port: 0,
        identity: receiverId(),
        onPeerError: (e) => peerErrors.push(e),
      });
      try {
        const data = randomBytes(MiB + 5);
        const accepted = listener.accept();
        const [sent, got] = await Promise.all([
          sendJs(
            { host: HOST, port: listener.port, serverName: 'node-b', identity: senderId(), streams: 1 },
            chunksOf(data),
          ),
          accepted.then(drain),
        ]);
        expect(got).toBe(sha256(data));
        const stream = await accepted;
        // The sender closed its connection: the transfer is over at the listener too.
        await until(() => stream.stats().connections === 0);
        await new Promise((r) => setTimeout(r, 50));
        const frames = stream.stats().receiver.frames;

        // A sender that lost the FIN's ack dials the same session again and resends its FIN.
        const again = tlsConnect({
          host: HOST,
          port: listener.port,
          ...clientTlsOptions(senderId(), 'node-b'),
        });
        const received: Buffer[] = [];
        const outcome = new Promise<{ ended: boolean; error: Error | null }>((resolve) => {
          let ended = false;
          let error: Error | null = null;
          again.on('data', (c: Buffer) => received.push(c));
          again.on('end', () => {
            ended = true;
          });
          again.on('error', (e) => {
            error = e;
          });
          again.on('close', () => resolve({ ended, error }));
        });
        again.once('secureConnect', () => {
          again.write(encodeHello({ sessionId: Buffer.from(sent.sessionId, 'hex'), index: 7 }));
          again.write(encodeFin(frames, data.length));
        });
        const { ended, error } = await outcome;
        expect(error).toBeNull();
        expect(ended).toBe(true);
        const reply = Buffer.concat(received);
        const parsed = parseFrame(reply, 0);
        expect(parsed?.frame).toEqual({
          kind: 'ack',
          ack: { seq: FIN_SEQ, cumulative: frames, window: expect.any(Number) },
        });
        expect(reply.length).toBe(parsed?.used);
        expect(peerErrors).toEqual([]);
      } finally {
        await listener.close();
      }
    },
    TIMEOUT_MS,
  );
});
