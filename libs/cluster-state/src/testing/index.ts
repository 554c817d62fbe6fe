/** Test support for this package and the API's specs; nothing here is a product path. */
export { AT, createVm, LogDriver, registerNode } from './fixtures';
export { LocalClusterStore, type LocalClusterStoreOptions } from './local-store';
