/**
 * The JS runtime over real sockets on 127.0.0.1 with real mutual TLS. Certificates are made with
 * the `openssl` CLI into a temporary directory: a CA, the receiver `node-b`, the sender `node-a`,
 * a second CA with a client of its own, an expired client, and a server certificate for the
 * wrong name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmstError } from './error';
import { dataHeader } from './frame';
import { encodeHello } from './hello';
import { TestPki } from './test-pki';
import {
  type JsClientConnection,
  type JsIncomingStream,
  type JsListener,
  type JsListenOptions,
  listenJs,
  sendJs,
  type TlsIdentity,
} from './tls-transport';

const MiB = 1024 * 1024;
const HOST = '127.0.0.1';

const pki = {
  ca: '',
  otherCa: '',
  /** The receiver, `DNS:node-b`. */
  nodeB: { cert: '', key: '' },
  /** The sender, `DNS:node-a`. */
  nodeA: { cert: '', key: '' },
  /** A client of the other CA. */
  stranger: { cert: '', key: '' },
  /** A client of the right CA whose certificate expired yesterday. */
  expired: { cert: '', key: '' },
  /** A server certificate of the right CA for `DNS:node-x`. */
  wrongName: { cert: '', key: '' },
};

let certs: TestPki | undefined;

beforeAll(() => {
  certs = new TestPki('amst-tls-');
  pki.ca = certs.ca('ca');
  pki.otherCa = certs.ca('other-ca');
  pki.nodeB = certs.leaf('node-b', 'node-b', 'ca');
  pki.nodeA = certs.leaf('node-a', 'node-a', 'ca');
  pki.stranger = certs.leaf('stranger', 'node-a', 'other-ca');
  pki.expired = certs.leaf('expired', 'node-a', 'ca', -1);
  pki.wrongName = certs.leaf('wrong-name', 'node-x', 'ca');
});

afterAll(() => certs?.remove());

const receiverId = (): TlsIdentity => ({ ca: pki.ca, ...pki.nodeB });
const senderId = (): TlsIdentity => ({ ca: pki.ca, ...pki.nodeA });

interface Harness {
  listener: JsListener;
  peerErrors: AmstError[];
}

async function listen(extra: Partial<JsListenOptions> = {}): Promise<Harness> {
  const peerErrors: AmstError[] = [];
  const listener = await listenJs({
    host: HOST,
    port: 0,
    identity: receiverId(),
    onPeerError: (err) => peerErrors.push(err),
    ...extra,
  });
  return { listener, peerErrors };
}

async function* chunksOf(data: Buffer, size = MiB): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function drain(stream: JsIncomingStream, onProgress?: (bytes: number) => void) {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const piece of stream) {
    hash.update(piece);
    bytes += piece.length;
    onProgress?.(bytes);
  }
  return { sha: hash.digest('hex'), bytes };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function sendTo(h: Harness, opts: { identity?: TlsIdentity; serverName?: string } = {}) {
  return {
    host: HOST,
    port: h.listener.port,
    serverName: opts.serverName ?? 'node-b',
    identity: opts.identity ?? senderId(),
  };
}

/** A small transfer, to show the listener still serves after a bad peer. */
async function roundTrip(h: Harness): Promise<void> {
  const data = randomBytes(3 * MiB + 17);
  const [sent, got] = await Promise.all([
    sendJs({ ...sendTo(h), streams: 2 }, chunksOf(data)),
    h.listener.accept().then((s) => drain(s)),
  ]);
  expect(sent.bytes).toBe(data.length);
  expect(got.sha).toBe(sha256(data));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Sockets and timers of this process, to show a transfer left none behind. */
function openHandles(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r.includes('TCP') || r.includes('TLS') || r === 'Timeout')
    .sort();
}

/** Handles open now beyond those in `before`. */
function leftOver(before: string[]): string[] {
  const left = [...before];
  return openHandles().filter((r) => {
    const at = left.indexOf(r);
    if (at < 0) return true;
    left.splice(at, 1);
    return false;
  });
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('AMST JS over mutual TLS', () => {
  it('delivers 32 MiB exactly over 4 connections', async () => {
    const h = await listen();
    try {
      const data = randomBytes(32 * MiB);
      const accepted = h.listener.accept();
      const [sent, got] = await Promise.all([
        sendJs({ ...sendTo(h), streams: 4 }, chunksOf(data)),
        accepted.then((s) => drain(s)),
      ]);
      expect(got.bytes).toBe(data.length);
      expect(got.sha).toBe(sha256(data));
      expect(sent.bytes).toBe(data.length);
      // A connection whose handshake finished late may have carried nothing: no count per
      // connection is assumed, only that the ids are the four the sender opened.
      expect(sent.connections.length).toBeGreaterThan(0);
      expect(sent.connections.every((c) => c.id >= 0 && c.id < 4)).toBe(true);
      const stream = await accepted;
      expect(stream.sessionId).toBe(sent.sessionId);
      expect(stream.stats().receiver.duplicates).toBe(0);
      expect(h.peerErrors).toEqual([]);
    } finally {
      await h.listener.close();
    }
  });

  it('loses and duplicates nothing when a connection is destroyed mid-transfer', async () => {
    const h = await listen();
    try {
      const data = randomBytes(32 * MiB);
      const accepted = h.listener.accept();
      let killed = -1;
      // The first connection to reach its 40th write (about 20 frames) is destroyed right after
      // it, before any ack can come back for those frames: they are certainly in flight, and must
      // be sent again elsewhere.
      const onConnection = ({ index, socket }: JsClientConnection) => {
        const write = socket.write.bind(socket);
        let writes = 0;
        socket.write = ((...args: Parameters<typeof write>) => {
          writes += 1;
          if (writes === 40 && killed < 0) {
            killed = index;
            queueMicrotask(() => socket.destroy());
          }
          return write(...args);
        }) as typeof socket.write;
      };
      const [sent, got] = await Promise.all([
        sendJs({ ...sendTo(h), streams: 4, onConnection }, chunksOf(data)),
        accepted.then((s) => drain(s)),
      ]);
      expect(killed).toBeGreaterThanOrEqual(0);
      expect(got.sha).toBe(sha256(data));
      expect(sent.bytes).toBe(data.length);
      expect(sent.stats.framesResent).toBeGreaterThan(0);
      const rx = (await accepted).stats();
      expect(rx.receiver.bytesDelivered).toBe(data.length);
      expect(rx.receiver.duplicates).toBeLessThanOrEqual(sent.stats.framesResent);
      // The lost connection was replaced.
      expect(rx.connectionsSeen).toBeGreaterThanOrEqual(5);
    } finally {
      await h.listener.close();
    }
  });

  it('adapts the number of connections and still delivers exactly', async () => {
    const h = await listen();
    try {
      const data = randomBytes(24 * MiB);
      const rateCap = 48 * MiB;
      const [sent, got] = await Promise.all([
        sendJs(
          { ...sendTo(h), streams: 'adaptive', adapt: { epochMs: 50, initialStreams: 1 }, rateCap },
          chunksOf(data),
        ),
        h.listener.accept().then((s) => drain(s)),
      ]);
      expect(got.sha).toBe(sha256(data));
      expect(sent.streamTargets.length).toBeGreaterThan(0);
      expect(sent.connections.length).toBeGreaterThanOrEqual(2);
      // The cap holds the whole transfer to about 0.5 s, plus the burst.
      expect(data.length / sent.seconds).toBeLessThan(rateCap * 1.1);
    } finally {
      await h.listener.close();
    }
  });

  it('stops pulling the source while the reader does not read', async () => {
    const h = await listen({ receiver: { window: 32 } });
    try {
      const data = randomBytes(24 * MiB);
      let pulled = 0;
      async function* counted(): AsyncGenerator<Uint8Array> {
        for await (const c of chunksOf(data)) {
          pulled += c.length;
          yield c;
        }
      }
      const sendBuffer = 4 * MiB;
      const sending = sendJs({ ...sendTo(h), streams: 2, sender: { sendBuffer } }, counted());
      const stream = await h.listener.accept();
      const hash = createHash('sha256');
      let read = 0;
      let pulledDuringPause = 0;
      for (let piece = await stream.read(); piece !== null; piece = await stream.read()) {
        hash.update(piece);
        read += piece.length;
        if (read === 2 * MiB) {
          await new Promise((r) => setTimeout(r, 300));
          pulledDuringPause = pulled;
        }
      }
      await sending;
      expect(hash.digest('hex')).toBe(sha256(data));
      // Unread: the receive window (32 frames of 64 KiB); unacknowledged: the send buffer; plus
      // the source chunk in hand.
      expect(pulledDuringPause - 2 * MiB).toBeLessThanOrEqual(32 * 64 * 1024 + sendBuffer + MiB);
    } finally {
      await h.listener.close();
    }
  });

  it('refuses a client certificate of another CA, and an expired one', async () => {
    const h = await listen();
    try {
      for (const client of [pki.stranger, pki.expired]) {
        const err = await rejection(
          sendJs(
            { ...sendTo(h, { identity: { ca: pki.ca, ...client } }), streams: 2 },
            chunksOf(randomBytes(MiB)),
          ),
        );
        expect(err).toBeInstanceOf(AmstError);
        expect(err).toMatchObject({ code: 'ERR_AMST_NO_CONNECTION' });
      }
      expect(new Set(h.peerErrors.map((e) => e.code))).toEqual(new Set(['ERR_AMST_TLS']));
      const messages = h.peerErrors.map((e) => e.message).join('\n');
      expect(messages).toContain('client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      expect(messages).toContain('client certificate refused: CERT_HAS_EXPIRED');
      await roundTrip(h);
    } finally {
      await h.listener.close();
    }
  });

  it('refuses a receiver whose certificate is for another name', async () => {
    const h = await listen({ identity: { ca: pki.ca, ...pki.wrongName } });
    try {
      const err = await rejection(sendJs({ ...sendTo(h), streams: 2 }, chunksOf(randomBytes(MiB))));
      expect(err).toBeInstanceOf(AmstError);
      expect(err).toMatchObject({ code: 'ERR_AMST_TLS' });
      expect((err as AmstError).cause).toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    } finally {
      await h.listener.close();
    }
    const right = await listen();
    try {
      const err = await rejection(
        sendJs({ ...sendTo(right, { serverName: 'node-c' }) }, chunksOf(randomBytes(MiB))),
      );
      expect((err as AmstError).cause).toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    } finally {
      await right.listener.close();
    }
  });

  it('refuses a plaintext client and keeps serving', async () => {
    const h = await listen();
    try {
      const plain = netConnect(h.listener.port, HOST);
      plain.on('error', () => {});
      plain.write('GET / HTTP/1.1\r\nHost: node-b\r\n\r\n');
      await new Promise((resolve) => plain.once('close', resolve));
      await until(() => h.peerErrors.length > 0);
      expect(h.peerErrors[0]?.code).toBe('ERR_AMST_TLS');
      await roundTrip(h);
    } finally {
      await h.listener.close();
    }
  });

  it('closes a peer that sends a malformed or oversized frame with a typed error, and keeps serving', async () => {
    // The stream fails once its only connection is closed and the sender has not come back.
    const h = await listen({ orphanTimeoutMs: 100 });
    try {
      const cases: [Buffer, string][] = [
        [Buffer.from('this is not a frame'), 'ERR_AMST_MALFORMED_FRAME'],
        [dataHeader(0, 64 * MiB), 'ERR_AMST_FRAME_TOO_LARGE'],
        [Buffer.concat([dataHeader(5000, 4), Buffer.from('late')]), 'ERR_AMST_BEYOND_WINDOW'],
      ];
      for (const [garbage, code] of cases) {
        const raw = tlsConnect({ host: HOST, port: h.listener.port, servername: 'node-b', ...senderId() });
        raw.on('error', () => {});
        // Flowing, or the client would never read the server's close.
        raw.resume();
        const closed = new Promise((resolve) => raw.once('close', resolve));
        raw.once('secureConnect', () => {
          raw.write(encodeHello({ sessionId: randomBytes(16), index: 0 }));
          raw.write(garbage);
        });
        const stream = await h.listener.accept();
        const err = await rejection(stream.read());
        expect(err).toBeInstanceOf(AmstError);
        expect(err).toMatchObject({ code });
        await closed;
      }
      expect(h.peerErrors.map((e) => (e as AmstError).code)).toEqual(cases.map((c) => c[1]));
      await roundTrip(h);
    } finally {
      await h.listener.close();
    }
  });

  it('cancels on abort: every socket closes and the receiver sees the failure', async () => {
    const h = await listen({ orphanTimeoutMs: 200 });
    try {
      const before = openHandles();
      const abort = new AbortController();
      const data = randomBytes(64 * MiB);
      const accepted = h.listener.accept();
      const sending = sendJs({ ...sendTo(h), streams: 3, signal: abort.signal }, chunksOf(data));
      const receiving = accepted.then((s) =>
        drain(s, (bytes) => {
          if (bytes >= 4 * MiB) abort.abort();
        }),
      );
      const sendErr = await rejection(sending);
      expect(sendErr).toMatchObject({ name: 'AbortError' });
      const recvErr = await rejection(receiving);
      expect(recvErr).toMatchObject({ code: 'ERR_AMST_NO_CONNECTION' });
      // Nothing this transfer opened is left (handles of earlier tests may have gone meanwhile).
      await until(() => leftOver(before).length === 0);
      expect(leftOver(before)).toEqual([]);
    } finally {
      await h.listener.close();
    }
  });

  it('refuses bad options with the name of the field', async () => {
    const h = await listen();
    try {
      const err = await rejection(sendJs({ ...sendTo(h), streams: 0 }, chunksOf(Buffer.alloc(1))));
      expect(err).toMatchObject({ code: 'ERR_AMST_INVALID_PARAM', field: 'streams' });
      const err2 = await rejection(sendJs({ ...sendTo(h), rateCap: 0 }, chunksOf(Buffer.alloc(1))));
      expect(err2).toMatchObject({ code: 'ERR_AMST_INVALID_PARAM', field: 'rateCap' });
      const err3 = await rejection(
        listenJs({ host: HOST, port: 0, identity: receiverId(), receiver: { window: 0 } }),
      );
      expect(err3).toMatchObject({ code: 'ERR_AMST_INVALID_PARAM', field: 'window' });
    } finally {
      await h.listener.close();
    }
  });
});
