import { expect, it } from 'vitest';
import { JsPacer } from './pacer';

it('pacer holds to the rate after the burst', () => {
  const p = new JsPacer(1_000_000, 100_000);
  let now = 0;
  let sent = 0;
  while (now < 2000) {
    const at = p.delayUntil(10_000, now);
    if (at === null) {
      p.onSent(10_000, now);
      sent += 10_000;
    } else {
      now = at;
    }
  }
  // 100 kB burst + 2 s at 1 MB/s, within one frame.
  expect(sent).toBeGreaterThanOrEqual(2_090_000);
  expect(sent).toBeLessThanOrEqual(2_110_000);
  expect(new JsPacer(null, 0).delayUntil(1 << 20, 0)).toBeNull();
});
