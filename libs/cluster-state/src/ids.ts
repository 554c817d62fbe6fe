/**
 * Fresh ids for proposers. Ids are chosen before a command is proposed, never while applying it,
 * so every replica applies the same ids.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function shortId(length = 10): string {
  const bytes = randomBytes(length);
  let out = '';
  // 256 % 36 = 4: the first four letters are very slightly likelier, harmless for ids.
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}

export const newVmId = (): string => `vm-${shortId()}`;
export const newMigrationId = (): string => `mig-${shortId()}`;
export const newTokenId = (): string => `tok-${shortId()}`;
