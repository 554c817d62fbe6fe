/**
 * Certificates for the JS runtime's TLS specs, made with the `openssl` CLI in a temporary
 * directory: real X.509 as an operator's CA would issue them (P-256 keys), including the bad ones
 * (another CA's, expired, the wrong name). Test support only.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestLeaf {
  cert: string;
  key: string;
}

export class TestPki {
  private readonly dir: string;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  /** A self-signed CA named `name`; returns its certificate. */
  ca(name: string): string {
    this.key(name);
    this.openssl(
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-subj',
      `/CN=${name}`,
      '-days',
      '2',
      '-out',
      `${name}.pem`,
    );
    return readFileSync(join(this.dir, `${name}.pem`), 'utf8');
  }

  /** A client and server certificate for `DNS:dns`, from CA `ca`, valid for `days` (negative: expired). */
  leaf(name: string, dns: string, ca: string, days = 2): TestLeaf {
    this.key(name);
    this.openssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${dns}`, '-out', `${name}.csr`);
    writeFileSync(
      join(this.dir, `${name}.ext`),
      `subjectAltName=DNS:${dns}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
    );
    this.openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      String(days),
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
    return {
      cert: readFileSync(join(this.dir, `${name}.pem`), 'utf8'),
      key: readFileSync(join(this.dir, `${name}.key`), 'utf8'),
    };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private key(name: string): void {
    this.openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }
}
