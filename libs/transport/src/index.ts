/**
 * AMST (Adaptive Multi-Stream Transport): one ordered byte stream over N parallel connections.
 * The native path (`AmstTransfer`, `AmstReceiver`, over the addon's TCP+TLS or QUIC) is what DWCP
 * runs. The pure-TypeScript reference path sits beside it under `Js*` names: the sans-IO core
 * (a port of `native/crates/amst`, byte-compatible on the wire) and its runtime over `node:tls`
 * (`sendJs`, `listenJs`), for the native-vs-JS bench and as a cross-check.
 */

export {
  type ConnectionStats,
  generateClusterCa,
  issueNodeCertificate,
  type NodeIdentity,
  type PemPair,
  type SendReport,
  type TransferStats,
} from '@novacron/native';

export { DEFAULT_ADAPT_CONFIG, type JsAdaptConfig, JsStreamCountController } from './js/adapt';
export type { ConnId, JsConnStats } from './js/conn';
export { AmstError, type AmstErrorCode } from './js/error';
export * as jsFrame from './js/frame';
export * as jsHello from './js/hello';
export { JsPacer } from './js/pacer';
export {
  DEFAULT_RECEIVER_CONFIG,
  JsReceiver,
  type JsReceiverConfig,
  type JsReceiverStats,
} from './js/receiver';
export {
  DEFAULT_SENDER_CONFIG,
  JsSender,
  type JsSenderConfig,
  type JsSenderEvent,
  type JsSenderStats,
  type JsTransmit,
} from './js/sender';
export * from './js/tls-transport';
export { ReceiveMeter, type ReceiveSnapshot, resultOf, SendMeter, type TransferResult } from './native/meter';
export { AmstMetrics, amstMetrics } from './native/metrics';
export { AmstReceiver, AmstTransfer, type TransferOptions } from './native/transfer';
export { AMST_METRICS, TransportModule } from './transport.module';
