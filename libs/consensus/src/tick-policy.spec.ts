import { describe, expect, it } from 'vitest';
import { TickPolicy } from './tick-policy';

describe('TickPolicy', () => {
  it('starts at the minimum tick before any RTT is known', () => {
    expect(new TickPolicy().tickMs()).toBe(50);
  });

  it('keeps the minimum on a LAN and stretches the tick on a WAN', () => {
    const lan = new TickPolicy();
    const wan = new TickPolicy();
    for (let i = 0; i < 200; i++) {
      lan.observe(2, 0.3 + (i % 5) * 0.1);
      wan.observe(2, 100 + (i % 10));
    }
    expect(lan.tickMs()).toBe(50);
    expect(wan.tickMs()).toBe(218); // p99 of 100..109 is 109, times 2
  });

  it('follows the slowest peer and its tail, not the mean', () => {
    const p = new TickPolicy();
    for (let i = 0; i < 100; i++) {
      p.observe(2, 1);
      p.observe(3, i === 99 ? 400 : 20);
    }
    expect(p.p99RttMs()).toBe(20);
    p.observe(3, 400);
    expect(p.p99RttMs()).toBe(400);
    expect(p.tickMs()).toBe(800);
  });

  it('gives each peer’s lowest round trip in the window, and forgets a peer that left', () => {
    const p = new TickPolicy();
    expect(p.minRttMs(2)).toBeUndefined();
    for (const ms of [9, 3.5, 40, 4]) p.observe(2, ms);
    p.observe(3, 100);
    expect(p.minRttMs(2)).toBe(3.5);
    expect(p.minRttMs(3)).toBe(100);
    p.forget(2);
    expect(p.minRttMs(2)).toBeUndefined();
  });

  it('is bounded above and ignores nonsense samples', () => {
    const p = new TickPolicy();
    p.observe(2, Number.NaN);
    p.observe(2, -5);
    expect(p.p99RttMs()).toBeUndefined();
    p.observe(2, 10_000);
    expect(p.tickMs()).toBe(2000);
    p.forget(2);
    expect(p.tickMs()).toBe(50);
  });
});
