/**
 * A broadcast of values to any number of async iterators (serial lines, VM events). Each
 * subscriber has its own queue, so a slow reader never holds back a fast one or the producer; a
 * queue that outgrows its bound drops its oldest values rather than growing without end.
 */

export class Feed<T> {
  private readonly backlog: T[] = [];
  private readonly subscribers = new Set<Subscription<T>>();
  private ended = false;
  private last: T | undefined;

  constructor(
    /** Values kept for subscribers that ask to replay. */
    private readonly backlogSize = 2000,
    /** Values a subscriber may leave unread before it loses the oldest. */
    private readonly queueBound = 10_000,
  ) {}

  push(value: T): void {
    if (this.ended) return;
    this.backlog.push(value);
    if (this.backlog.length > this.backlogSize) this.backlog.shift();
    for (const sub of this.subscribers) sub.offer(value);
  }

  /**
   * No more values: every iterator finishes once it has read what it was given. `last`, when
   * given, is pushed first and is all that later subscribers get (a VM's exit, say).
   */
  end(last?: T): void {
    if (this.ended) return;
    if (last !== undefined) {
      this.push(last);
      this.last = last;
    }
    this.ended = true;
    for (const sub of this.subscribers) sub.finish();
    this.subscribers.clear();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Values kept so far, oldest first. */
  recent(): readonly T[] {
    return this.backlog;
  }

  /** Subscribes now (not on the first `next()`), so nothing pushed after this call is missed. */
  subscribe(options: { replay?: boolean } = {}): AsyncIterableIterator<T> {
    const sub = new Subscription<T>(this.queueBound, () => this.subscribers.delete(sub));
    if (options.replay) for (const value of this.backlog) sub.offer(value);
    else if (this.ended && this.last !== undefined) sub.offer(this.last);
    if (this.ended) sub.finish();
    else this.subscribers.add(sub);
    return sub;
  }
}

class Subscription<T> implements AsyncIterableIterator<T> {
  private readonly queue: T[] = [];
  private waiter: ((result: IteratorResult<T>) => void) | undefined;
  private done = false;

  constructor(
    private readonly bound: number,
    private readonly detach: () => void,
  ) {}

  offer(value: T): void {
    if (this.done) return;
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = undefined;
      resolve({ value, done: false });
      return;
    }
    this.queue.push(value);
    if (this.queue.length > this.bound) this.queue.shift();
  }

  finish(): void {
    this.done = true;
    if (this.waiter && this.queue.length === 0) {
      const resolve = this.waiter;
      this.waiter = undefined;
      resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift() as T, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.queue.length = 0;
    this.detach();
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
