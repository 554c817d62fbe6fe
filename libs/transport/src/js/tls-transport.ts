/**
 * AMST over N `node:tls` connections: the pure-TypeScript runtime around the JS core, for the
 * native-vs-JS bench and as a cross-check of the native transport.
 *
 * Each connection is TLS 1.3 with mutual authentication (both ends present a certificate of the
 * cluster CA; the client checks the receiver's name). It opens with the hello of `hello.ts`, which
 * names the transfer's session, then carries the frames of `frame.ts`: DATA and FIN from the
 * sender, ACKs back. A transfer is one `sendJs` call on one side and one `JsIncomingStream` from
 * `listenJs().accept()` on the other.
 */

export { JsAbortError, type TlsIdentity } from './tls-identity';
export {
  type JsIncomingStats,
  JsIncomingStream,
  type JsListener,
  type JsListenOptions,
  type JsPeerInfo,
  listenJs,
} from './tls-listen';
export { type JsClientConnection, type JsSendOptions, type JsSendResult, sendJs } from './tls-send';
