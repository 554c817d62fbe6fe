/**
 * JSON over the node's REST API. An https API is verified against the cluster CA when one is given
 * (node:https, since the global fetch takes no CA). Every failure becomes a CliError with the API's
 * code, or ERR_UNAVAILABLE / ERR_TIMEOUT / ERR_TLS when no answer came.
 */
import http from 'node:http';
import https from 'node:https';
import { CliError, EXIT, exitCodeForApiError, type FieldProblem } from './exit-codes';

export interface ApiTarget {
  /** The API's base URL; request paths are appended to its path. */
  url: URL;
  token?: string;
  /** PEM of the CA that signs the API's certificate (https only); the system's roots without it. */
  caPem?: string;
  /** Where caPem came from, for error messages. */
  caSource?: string;
  timeoutMs: number;
}

interface ErrorBody {
  code?: unknown;
  message?: unknown;
  fields?: unknown;
}

function fieldProblems(value: unknown): FieldProblem[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((f: { path?: unknown; message?: unknown }) =>
    typeof f?.message === 'string'
      ? [{ path: typeof f.path === 'string' ? f.path : '', message: f.message }]
      : [],
  );
}

function apiError(status: number, text: string): CliError {
  let body: ErrorBody = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {}
  const code = typeof body?.code === 'string' ? body.code : `ERR_HTTP_${status}`;
  const message =
    typeof body?.message === 'string' ? body.message : `HTTP ${status} ${text.slice(0, 200)}`.trim();
  return new CliError(code, message, exitCodeForApiError(code, status), fieldProblems(body?.fields));
}

const TLS_FAILURE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL/;

export class ApiClient {
  private readonly agent: http.Agent;

  constructor(readonly target: ApiTarget) {
    this.agent =
      target.url.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, ...(target.caPem !== undefined ? { ca: target.caPem } : {}) })
        : new http.Agent({ keepAlive: true });
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  private urlOf(path: string): URL {
    const base = this.target.url;
    const [pathname = '', query] = path.split('?');
    const url = new URL(base.href);
    url.pathname = `${base.pathname.replace(/\/+$/, '')}${pathname}`;
    url.search = query ? `?${query}` : '';
    return url;
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = this.urlOf(path);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.target.token !== undefined) headers.authorization = `Bearer ${this.target.token}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<T>((resolve, reject) => {
      const req = lib.request(url, { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(this.networkError(e)));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          if (status < 200 || status >= 300) {
            const error = apiError(status, text);
            if (status === 401 && this.target.token === undefined) {
              error.message +=
                '; no token was given (--token, --token-file, DWCP_TOKEN or <data-dir>/cluster/admin.token)';
            }
            reject(error);
            return;
          }
          try {
            resolve((text === '' ? undefined : JSON.parse(text)) as T);
          } catch {
            reject(
              new CliError(
                'ERR_BAD_RESPONSE',
                `${method} ${url.href} answered ${status} with something that is not JSON; is --api the DWCP node API?`,
                EXIT.unexpected,
              ),
            );
          }
        });
      });
      req.setTimeout(this.target.timeoutMs, () => {
        req.destroy(
          new CliError(
            'ERR_TIMEOUT',
            `no answer from the API at ${url.origin} within ${this.target.timeoutMs / 1000} s`,
            EXIT.unavailable,
          ),
        );
      });
      req.on('error', (e) => reject(this.networkError(e)));
      req.end(payload);
    });
  }

  private networkError(e: Error & { code?: string }): CliError {
    if (e instanceof CliError) return e;
    const origin = this.target.url.origin;
    if (TLS_FAILURE.test(e.code ?? '')) {
      const against = this.target.caSource ?? "the system's CA certificates";
      return new CliError(
        'ERR_TLS',
        `the API at ${origin} presented a certificate that does not verify against ${against} (${e.message}); pass the cluster CA with --ca or --data-dir`,
        EXIT.auth,
      );
    }
    return new CliError(
      'ERR_UNAVAILABLE',
      `cannot reach the API at ${origin}: ${e.message}`,
      EXIT.unavailable,
    );
  }
}
