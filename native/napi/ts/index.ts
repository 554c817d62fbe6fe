/**
 * The typed facade over the generated napi loader: the only module the rest of DWCP imports
 * from native code. It turns the addon's `CODE: message` errors into {@link NativeError}s with a
 * stable `code`, and accepts any Uint8Array without copying.
 */

export * from './acp';
export { liftError, NativeError } from './errors';
export * from './hde';
export * from './migration';
export * from './transport';
