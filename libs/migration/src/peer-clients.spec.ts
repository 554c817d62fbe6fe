/**
 * PeerClients keeps one mutual-TLS client per peer across migrations: a RemoteDestination that
 * uses it leaves the connection up when it closes, so the next migration's first RPC does not pay
 * for a new TCP and TLS handshake. Against a real gRPC server on loopback.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type IncomingMigrationHandlers,
  incomingMigrationServer,
  incomingMigrationService,
  PeerClients,
  RemoteDestination,
} from './incoming-rpc';

const ca = generateClusterCa('peer-clients-test');
const server = issueNodeCertificate(ca, { nodeName: 'node-2' });
const client = issueNodeCertificate(ca, { nodeName: 'node-1' });
const identity = { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem };

const handlers: IncomingMigrationHandlers = {
  prepare: async (id) => ({ host: '127.0.0.1', port: 4000 + Number(id.slice(-1)), serverName: 'node-2' }),
  await: async () => ({ sink: { bytesToQemu: 0, wireBytes: 0 } }),
  abort: async () => 'aborted' as const,
};

describe('PeerClients', () => {
  let grpcServer: grpc.Server;
  /** A TCP relay in front of the server, counting the connections clients open. */
  let relay: Server;
  let relayPort = 0;
  let connections = 0;

  beforeAll(async () => {
    const served = await serve(0);
    grpcServer = served.server;
    const port = served.port;
    relay = createServer((inbound: Socket) => {
      connections += 1;
      const outbound = connect(port, '127.0.0.1');
      inbound.pipe(outbound).pipe(inbound);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    relayPort = (relay.address() as { port: number }).port;
  });

  afterAll(async () => {
    relay.close();
    await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
  });

  /** A server for the service on `port` (0: any), mutual TLS as node-2. */
  async function serve(port: number): Promise<{ server: grpc.Server; port: number }> {
    const s = new grpc.Server();
    s.addService(
      incomingMigrationService().service,
      incomingMigrationServer(handlers, () => ['node-1']),
    );
    const creds = grpc.ServerCredentials.createSsl(
      Buffer.from(ca.certPem),
      [{ cert_chain: Buffer.from(server.certPem), private_key: Buffer.from(server.keyPem) }],
      true,
    );
    const bound = await new Promise<number>((resolve, reject) =>
      s.bindAsync(`127.0.0.1:${port}`, creds, (e, p) => (e ? reject(e) : resolve(p))),
    );
    return { server: s, port: bound };
  }

  it('a peer that went away and came back is reached on the next migration (a fresh client, not the backoff)', async () => {
    const first = await serve(0);
    const clients = new PeerClients(identity);
    const peer = { addr: `127.0.0.1:${first.port}`, nodeName: 'node-2' };
    const destination = (migrationId: string) =>
      new RemoteDestination({ migrationId, ...peer, identity, clients });
    expect(await destination('mig-5').prepare()).toMatchObject({ port: 4005 });
    // The node dies: its pooled connection fails and gRPC backs off reconnecting.
    first.server.forceShutdown();
    await expect(destination('mig-6').prepare()).rejects.toMatchObject({ code: 'ERR_PEER_UNAVAILABLE' });
    // It restarts on the same address: the next migration's Prepare gets through at once.
    const again = await serve(first.port);
    try {
      expect(await destination('mig-7').prepare()).toMatchObject({ port: 4007 });
    } finally {
      clients.close();
      again.server.forceShutdown();
    }
  });

  it('without a pool, each destination opens its own connection and closes it', async () => {
    const peer = { addr: `127.0.0.1:${relayPort}`, nodeName: 'node-2' };
    connections = 0;
    for (const migrationId of ['mig-3', 'mig-4']) {
      const destination = new RemoteDestination({ migrationId, ...peer, identity });
      await destination.prepare();
      destination.close();
    }
    expect(connections).toBe(2);
  });

  it('gives one client per peer, and two migrations in a row share its one connection', async () => {
    const clients = new PeerClients(identity);
    const peer = { addr: `127.0.0.1:${relayPort}`, nodeName: 'node-2' };
    expect(clients.clientFor(peer)).toBe(clients.clientFor(peer));
    connections = 0;
    for (const migrationId of ['mig-1', 'mig-2']) {
      const destination = new RemoteDestination({ migrationId, ...peer, identity, clients });
      expect(await destination.prepare()).toMatchObject({ port: 4000 + Number(migrationId.slice(-1)) });
      destination.close();
    }
    expect(connections).toBe(1);
    // A node that left the cluster: its client closes, and a later one is a new client.
    const before = clients.clientFor(peer);
    clients.retain([]);
    expect(clients.clientFor(peer)).not.toBe(before);
    clients.close();
  });
});
