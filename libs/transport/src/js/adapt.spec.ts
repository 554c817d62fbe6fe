import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAPT_CONFIG, JsStreamCountController } from './adapt';
import { AmstError } from './error';

/** Targets over `epochs` when each connection gets at most `perConn` and they share `link` (B/s). */
function run(perConn: number, link: number, epochs: number): number[] {
  const c = new JsStreamCountController();
  const epochMs = DEFAULT_ADAPT_CONFIG.epochMs;
  let delivered = 0;
  let now = 0;
  const history: number[] = [];
  c.handleProgress(0, now);
  for (let i = 0; i < epochs; i++) {
    const rate = Math.min(c.target() * perConn, link);
    now += epochMs;
    delivered += (rate * epochMs) / 1000;
    c.handleProgress(Math.floor(delivered), now);
    history.push(c.target());
  }
  return history;
}

describe('stream-count controller', () => {
  it('climbs until the link is full, then stays near', () => {
    // Each connection is loss-limited to 1.4 MB/s, the link carries 12.5 MB/s: 9 fill it.
    const tail = run(1.4e6, 12.5e6, 200).slice(100);
    expect(
      tail.every((n) => n >= 8 && n <= 11),
      `${tail}`,
    ).toBe(true);
  });

  it('stays low when one connection fills the link', () => {
    const late = run(100e6, 100e6, 100).slice(50);
    expect(
      late.every((n) => n <= 3),
      `${late}`,
    ).toBe(true);
    expect(late.includes(1) || late.includes(2)).toBe(true);
  });

  it('names the field of a bad setting', () => {
    let err: unknown;
    try {
      new JsStreamCountController({ maxStreams: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AmstError);
    expect(err).toMatchObject({ code: 'ERR_AMST_INVALID_PARAM', field: 'maxStreams' });
  });
});
