/** @novacron/host: this node as a VM host, following the replicated state. */
export { HostModule, type HostModuleOptions, IMAGE_CATALOG, VmHostFollower } from './host.module';
export { ImageCatalog } from './image-catalog';
export { VmDisks, type VmDisksOptions } from './vm-disks';
export { VM_HOST, VmHost, type VmStatusReport, type VmStatusSink } from './vm-host';
