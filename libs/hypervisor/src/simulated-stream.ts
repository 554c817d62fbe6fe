/**
 * What a simulated VM's migration stream carries, and its format: a model of guest memory and a
 * QEMU-like RAM stream of it, with a reader that checks a stream as a loading QEMU would. Pure (no
 * sockets, no clock); the SimulatedDriver moves the bytes. Nothing here is evidence about QEMU.
 *
 * The stream, little-endian:
 *
 *     header   "DWCPSIM1" | RAM bytes (u64) | page size (u32, 4096) | 0 (u32)
 *     record   u64 = guest address | flag, then by flag:
 *       ZERO   0x02  one byte, 0: the page is all zeros (9 bytes a page, as QEMU's RAM_SAVE_FLAG_ZERO)
 *       PAGE   0x08  the page's 4096 bytes
 *       DEVICE 0x40  u32 length, then the device state as JSON (`DeviceState`)
 *       EOS    0x10  end of stream (address 0)
 *     trailer  u64 count of the bytes before the trailer | their SHA-256
 *
 * A page may come again after it was dirtied; its last copy counts. A reader accepts a stream only
 * when the header matches its own RAM size, the trailer matches, every page came at least once,
 * nothing follows the trailer, and every page's last copy is what the source's memory held when it
 * stopped (the device state says how to recompute that).
 */

import { createHash } from 'node:crypto';
import type { VmSpec } from './driver';

export const PAGE_SIZE = 4096;
const WORDS = PAGE_SIZE / 4;
const MiB = 1024 * 1024;
const MAGIC = Buffer.from('DWCPSIM1');
const HEADER_BYTES = 24;
const RECORD_BYTES = 8;
const TRAILER_BYTES = 40;
const FLAG_ZERO = 0x02;
const FLAG_PAGE = 0x08;
const FLAG_EOS = 0x10;
const FLAG_DEVICE = 0x40;
const MAX_DEVICE_BYTES = 16 * MiB;
const ZERO_CHECKSUM = checksum(new Uint32Array(WORDS));

/** The part of a guest's memory that is not a function of its spec alone. */
export interface GuestMemoryState {
  /** Seeds the private region: random for each launched VM, carried along by its migrations. */
  seed: string;
  /** How often each working-set page has been dirtied. */
  versions: number[];
}

/** What follows the RAM, as QEMU's device state does: what the destination needs to carry on. */
export interface DeviceState {
  heartbeatSeq: number;
  memory: GuestMemoryState;
}

export class StreamError extends Error {
  override readonly name = 'StreamError';
}

interface Region {
  start: number;
  end: number;
  seed: Uint32Array;
}

/**
 * A simulated guest's RAM, computed page by page rather than stored. From 1 MiB, an eighth of RAM
 * is a boot image whose bytes depend only on the spec's kernel, initrd and disk, so every VM of
 * one image holds the same bytes there (and DWCP's chunk store dedups them); from the middle, a
 * sixteenth is private to the VM, and its first quarter is the working set the guest dirties.
 * The rest is zeros. Content is half zero bytes, so it compresses about as guest memory does.
 */
export class GuestMemory {
  readonly ramBytes: number;
  readonly pages: number;
  private readonly image: Region;
  private readonly own: Region;
  private readonly versions: Uint32Array;
  private readonly rng: Uint32Array;

  constructor(
    spec: VmSpec,
    readonly seed: string,
    versions?: readonly number[],
  ) {
    this.ramBytes = spec.memoryMiB * MiB;
    this.pages = this.ramBytes / PAGE_SIZE;
    const imageStart = MiB / PAGE_SIZE;
    const ownStart = this.pages / 2;
    this.image = {
      start: imageStart,
      end: imageStart + this.pages / 8,
      seed: seedWords(
        `image\0${spec.kernel ?? ''}\0${spec.initrd ?? ''}\0${(spec.disks ?? []).map((d) => d.path).join('\0')}`,
      ),
    };
    this.own = { start: ownStart, end: ownStart + this.pages / 16, seed: seedWords(`private\0${seed}`) };
    const workingSet = this.pages / 64;
    if (versions !== undefined && versions.length !== workingSet) {
      throw new StreamError(`the device state has ${versions.length} page versions for ${workingSet} pages`);
    }
    this.versions = Uint32Array.from(versions ?? new Array<number>(workingSet).fill(0));
    this.rng = seedWords(`dirty\0${seed}`);
    this.rng[3] = (this.rng[3] ?? 0) | 1;
  }

  /** Writes page `page` into `out`; false (and `out` untouched) when the page is all zeros. */
  fill(page: number, out: Uint32Array): boolean {
    if (page >= this.image.start && page < this.image.end) {
      generatePage(this.image.seed, page, 0, out);
      return true;
    }
    if (page >= this.own.start && page < this.own.end) {
      generatePage(this.own.seed, page, this.versions[page - this.own.start] ?? 0, out);
      return true;
    }
    return false;
  }

  /** The guest writes `count` times to working-set pages it picks; returns the pages it wrote. */
  dirty(count: number): number[] {
    const written: number[] = [];
    for (let i = 0; i < count; i++) {
      const slot = xorshift(this.rng) % this.versions.length;
      this.versions[slot] = ((this.versions[slot] ?? 0) + 1) >>> 0;
      written.push(this.own.start + slot);
    }
    return written;
  }

  state(): GuestMemoryState {
    return { seed: this.seed, versions: Array.from(this.versions) };
  }
}

/** Writes one VM's stream, record by record, keeping the length and digest for the trailer. */
export class StreamEncoder {
  private readonly hash = createHash('sha256');
  private length = 0;
  private readonly words = new Uint32Array(WORDS);

  constructor(private readonly memory: GuestMemory) {}

  header(): Buffer {
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header);
    header.writeBigUInt64LE(BigInt(this.memory.ramBytes), 8);
    header.writeUInt32LE(PAGE_SIZE, 16);
    return this.emit(header);
  }

  page(page: number): Buffer {
    if (!this.memory.fill(page, this.words)) {
      const record = Buffer.alloc(RECORD_BYTES + 1);
      writeRecordWord(record, page * PAGE_SIZE, FLAG_ZERO);
      return this.emit(record);
    }
    const record = Buffer.allocUnsafe(RECORD_BYTES + PAGE_SIZE);
    writeRecordWord(record, page * PAGE_SIZE, FLAG_PAGE);
    record.set(new Uint8Array(this.words.buffer), RECORD_BYTES);
    return this.emit(record);
  }

  device(state: DeviceState): Buffer {
    const json = Buffer.from(JSON.stringify(state));
    const record = Buffer.alloc(RECORD_BYTES + 4 + json.length);
    writeRecordWord(record, 0, FLAG_DEVICE);
    record.writeUInt32LE(json.length, RECORD_BYTES);
    json.copy(record, RECORD_BYTES + 4);
    return this.emit(record);
  }

  /** The EOS record and the trailer: the last bytes of the stream. */
  end(): Buffer {
    const eos = Buffer.alloc(RECORD_BYTES);
    writeRecordWord(eos, 0, FLAG_EOS);
    this.emit(eos);
    const trailer = Buffer.alloc(TRAILER_BYTES);
    trailer.writeBigUInt64LE(BigInt(this.length));
    this.hash.digest().copy(trailer, 8);
    return Buffer.concat([eos, trailer]);
  }

  private emit(bytes: Buffer): Buffer {
    this.hash.update(bytes);
    this.length += bytes.length;
    return bytes;
  }
}

/**
 * Reads a stream as it arrives, for the VM `spec` describes. `push` throws a StreamError at the
 * first thing a loading QEMU would refuse; `end` (at EOF) throws unless the stream was whole.
 */
export class StreamReader {
  private pending: Buffer = Buffer.alloc(0);
  private phase: 'header' | 'records' | 'trailer' | 'done' = 'header';
  private readonly hash = createHash('sha256');
  private length = 0;
  private readonly ramBytes: number;
  private readonly received: Uint8Array;
  private readonly checksums: Uint32Array;
  private readonly words = new Uint32Array(WORDS);
  private device: DeviceState | undefined;

  constructor(private readonly spec: VmSpec) {
    this.ramBytes = spec.memoryMiB * MiB;
    this.received = new Uint8Array(this.ramBytes / PAGE_SIZE);
    this.checksums = new Uint32Array(this.ramBytes / PAGE_SIZE);
  }

  /** Bytes of the stream read so far. */
  get bytesRead(): number {
    return this.length;
  }

  push(chunk: Buffer): void {
    const bytes = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let at = 0;
    for (;;) {
      const used = this.step(bytes, at);
      if (used === 0) break;
      at += used;
    }
    this.pending = bytes.subarray(at);
  }

  /** The stream reached EOF: the device state, if the stream was whole and the memory checks out. */
  end(): DeviceState {
    if (this.phase !== 'done') {
      const where = this.phase === 'trailer' ? 'its trailer' : 'EOS';
      throw new StreamError(
        `the stream ended without ${where} after ${this.length + this.pending.length} bytes`,
      );
    }
    const missing = this.received.indexOf(0);
    if (missing !== -1) throw new StreamError(`page ${missing} never came`);
    const device = this.device;
    if (device === undefined) throw new StreamError('no device state came');
    const memory = new GuestMemory(this.spec, device.memory.seed, device.memory.versions);
    for (let page = 0; page < this.checksums.length; page++) {
      const expected = memory.fill(page, this.words) ? checksum(this.words) : ZERO_CHECKSUM;
      if (this.checksums[page] !== expected) {
        throw new StreamError(`page ${page} is not what the source's memory held when it stopped`);
      }
    }
    return device;
  }

  /** Takes one item of the stream at `at`; the bytes it used, 0 when it needs more. */
  private step(bytes: Buffer, at: number): number {
    const left = bytes.length - at;
    switch (this.phase) {
      case 'header': {
        if (left < HEADER_BYTES) return 0;
        if (!bytes.subarray(at, at + MAGIC.length).equals(MAGIC)) {
          throw new StreamError('not a simulated migration stream (bad magic)');
        }
        const ramBytes = Number(bytes.readBigUInt64LE(at + 8));
        if (ramBytes !== this.ramBytes) {
          throw new StreamError(
            `RAM size mismatch: the stream has ${ramBytes} bytes, this VM ${this.ramBytes}`,
          );
        }
        const pageSize = bytes.readUInt32LE(at + 16);
        if (pageSize !== PAGE_SIZE) throw new StreamError(`page size ${pageSize}, expected ${PAGE_SIZE}`);
        this.phase = 'records';
        return this.consume(bytes, at, HEADER_BYTES);
      }
      case 'records':
        return this.record(bytes, at, left);
      case 'trailer': {
        if (left < TRAILER_BYTES) return 0;
        const length = Number(bytes.readBigUInt64LE(at));
        if (length !== this.length) {
          throw new StreamError(`the trailer counts ${length} bytes, ${this.length} came`);
        }
        if (!bytes.subarray(at + 8, at + TRAILER_BYTES).equals(this.hash.digest())) {
          throw new StreamError('the stream digest does not match its trailer');
        }
        this.phase = 'done';
        return TRAILER_BYTES;
      }
      case 'done':
        if (left === 0) return 0;
        throw new StreamError(`${left} bytes after the end of the stream`);
    }
  }

  private record(bytes: Buffer, at: number, left: number): number {
    if (left < RECORD_BYTES) return 0;
    const low = bytes.readUInt32LE(at);
    const flag = low & (PAGE_SIZE - 1);
    const address = bytes.readUInt32LE(at + 4) * 2 ** 32 + (low - flag);
    switch (flag) {
      case FLAG_ZERO: {
        if (left < RECORD_BYTES + 1) return 0;
        if (bytes[at + RECORD_BYTES] !== 0) throw new StreamError(`zero page ${address} is not zero`);
        const page = this.pageOf(address);
        this.received[page] = 1;
        this.checksums[page] = ZERO_CHECKSUM;
        return this.consume(bytes, at, RECORD_BYTES + 1);
      }
      case FLAG_PAGE: {
        if (left < RECORD_BYTES + PAGE_SIZE) return 0;
        const page = this.pageOf(address);
        new Uint8Array(this.words.buffer).set(
          bytes.subarray(at + RECORD_BYTES, at + RECORD_BYTES + PAGE_SIZE),
        );
        this.received[page] = 1;
        this.checksums[page] = checksum(this.words);
        return this.consume(bytes, at, RECORD_BYTES + PAGE_SIZE);
      }
      case FLAG_DEVICE: {
        if (left < RECORD_BYTES + 4) return 0;
        const length = bytes.readUInt32LE(at + RECORD_BYTES);
        if (length > MAX_DEVICE_BYTES) throw new StreamError(`device state of ${length} bytes`);
        if (left < RECORD_BYTES + 4 + length) return 0;
        const start = at + RECORD_BYTES + 4;
        this.device = parseDeviceState(bytes.subarray(start, start + length));
        return this.consume(bytes, at, RECORD_BYTES + 4 + length);
      }
      case FLAG_EOS:
        if (address !== 0) throw new StreamError(`EOS with address ${address}`);
        this.phase = 'trailer';
        return this.consume(bytes, at, RECORD_BYTES);
      default:
        throw new StreamError(`unknown record flags 0x${flag.toString(16)} at byte ${this.length}`);
    }
  }

  private pageOf(address: number): number {
    if (address >= this.ramBytes) {
      throw new StreamError(`page address ${address} is beyond RAM (${this.ramBytes} bytes)`);
    }
    return address / PAGE_SIZE;
  }

  private consume(bytes: Buffer, at: number, length: number): number {
    this.hash.update(bytes.subarray(at, at + length));
    this.length += length;
    return length;
  }
}

function parseDeviceState(json: Buffer): DeviceState {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    throw new StreamError('the device state is not JSON');
  }
  const v = value as { heartbeatSeq?: unknown; memory?: { seed?: unknown; versions?: unknown } };
  const versions = v.memory?.versions;
  if (
    !Number.isSafeInteger(v.heartbeatSeq) ||
    typeof v.memory?.seed !== 'string' ||
    !Array.isArray(versions) ||
    !versions.every((x) => Number.isSafeInteger(x) && x >= 0)
  ) {
    throw new StreamError('the device state lacks heartbeatSeq, memory.seed or memory.versions');
  }
  return value as DeviceState;
}

function writeRecordWord(record: Buffer, address: number, flag: number): void {
  record.writeUInt32LE((address % 2 ** 32) + flag, 0);
  record.writeUInt32LE(Math.floor(address / 2 ** 32), 4);
}

function seedWords(text: string): Uint32Array {
  const digest = createHash('sha256').update(text).digest();
  return Uint32Array.from([0, 4, 8, 12], (offset) => digest.readUInt32LE(offset));
}

function xorshift(state: Uint32Array): number {
  let t = state[0] ?? 0;
  const s = state[3] ?? 0;
  state[0] = state[1] ?? 0;
  state[1] = state[2] ?? 0;
  state[2] = s;
  t ^= t << 11;
  t ^= t >>> 8;
  state[3] = (t ^ s ^ (s >>> 19)) >>> 0;
  return state[3];
}

/** A page of pseudo-random words (xorshift128) with every other byte zero, from (seed, page, version). */
function generatePage(seed: Uint32Array, page: number, version: number, out: Uint32Array): void {
  let a = (seed[0] ?? 0) ^ Math.imul(page + 1, 0x9e3779b1);
  let b = (seed[1] ?? 0) ^ Math.imul(version + 1, 0x85ebca6b);
  let c = seed[2] ?? 0;
  let d = (seed[3] ?? 0) | 1;
  for (let i = -8; i < WORDS; i++) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ t ^ (t >>> 8);
    if (i >= 0) out[i] = d & 0x00ff00ff;
  }
}

/** FNV-1a over 32-bit words: enough to tell a page's copies apart in a simulation. */
function checksum(words: Uint32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ (words[i] ?? 0), 0x01000193);
  return h >>> 0;
}
