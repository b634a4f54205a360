import { joinUrl } from './api';

/** One row of `POST /events`. */
export interface ApiEvent {
  user_id: string;
  item_id: string;
  event_type: 'impression' | 'click';
  recommendation_id: string;
  position: number;
}

export interface TrackerOptions {
  /** Milliseconds between sends of waiting impressions. */
  flushIntervalMs?: number;
  /** Events per request. The API takes 10 browser events/s per shopper (20 in a burst). */
  maxBatch?: number;
  /** Attempts for an event whose request failed on the network or with a 5xx. */
  maxAttempts?: number;
  fetchImpl?: typeof fetch;
}

interface Queued {
  event: ApiEvent;
  attempts: number;
}

/**
 * Sends a page's widget events in small batches: impressions are collected and sent about
 * once a second (a grid of cards would otherwise be a burst of requests), clicks at once, so
 * the shopper's next recommendations already know of them. A 429 pauses sending for its
 * Retry-After; nothing is sent twice for the same shown card.
 */
export class EventTracker {
  private readonly url: string;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly maxAttempts: number;
  private readonly fetchImpl: typeof fetch;
  private queue: Queued[] = [];
  private readonly seen = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pausedUntil = 0;
  private sending: Promise<void> | undefined;

  constructor(apiUrl: string, options: TrackerOptions = {}) {
    this.url = joinUrl(apiUrl, '/events');
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.maxBatch = options.maxBatch ?? 5;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.fetchImpl = options.fetchImpl ?? ((input, init) => fetch(input, init));
  }

  /** Queues an event; false when it was an impression already reported. */
  track(event: ApiEvent): boolean {
    if (event.event_type === 'impression') {
      const key = `${event.user_id}\u0000${event.recommendation_id}\u0000${event.position}`;
      if (this.seen.has(key)) return false;
      this.seen.add(key);
      this.queue.push({ event, attempts: 0 });
      this.schedule(this.flushIntervalMs);
    } else {
      // clicks go first: they are what changes the shopper's next answer
      const firstImpression = this.queue.findIndex((q) => q.event.event_type === 'impression');
      const at = firstImpression === -1 ? this.queue.length : firstImpression;
      this.queue.splice(at, 0, { event, attempts: 0 });
      this.schedule(0);
    }
    return true;
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Sends one batch now (unless paused by a 429); resolves when its answer is in. */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    const wait = this.pausedUntil - Date.now();
    if (this.queue.length === 0) return Promise.resolve();
    if (wait > 0) {
      this.schedule(wait);
      return Promise.resolve();
    }
    const batch = this.queue.splice(0, this.maxBatch);
    this.sending = this.send(batch).finally(() => {
      this.sending = undefined;
      if (this.queue.length > 0) this.schedule(this.flushIntervalMs);
    });
    return this.sending;
  }

  /**
   * Sends everything still waiting at once, in parallel batches: the page is going away (or
   * hidden, which on phones is often the last chance), so waiting for the next flush would lose
   * them. Nothing is sent while a 429 asks to wait.
   */
  sendAllNow(): void {
    if (this.pausedUntil > Date.now()) return;
    while (this.queue.length > 0) void this.send(this.queue.splice(0, this.maxBatch));
  }

  /** Sends everything still waiting, batch after batch, respecting the pace (tests, tools). */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.sending) {
      const wait = this.pausedUntil - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      await this.flush();
    }
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
  }

  private async send(batch: Queued[]): Promise<void> {
    let response: Response | undefined;
    try {
      response = await this.fetchImpl(this.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ events: batch.map((q) => q.event) }),
        // delivered even when the click navigates away from the page
        keepalive: true,
        credentials: 'omit',
      });
    } catch {
      response = undefined;
    }
    if (response?.ok) return;
    if (response?.status === 429) {
      const seconds = Number(response.headers.get('Retry-After'));
      this.pausedUntil = Date.now() + (Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000;
      this.queue.unshift(...batch);
      return;
    }
    if (response === undefined || response.status >= 500) {
      const retry = batch
        .map((q) => ({ ...q, attempts: q.attempts + 1 }))
        .filter((q) => q.attempts < this.maxAttempts);
      this.pausedUntil = Date.now() + this.flushIntervalMs * 2 ** (batch[0]?.attempts ?? 0);
      this.queue.unshift(...retry);
    }
    // any other refusal (422: an item the shop no longer has) would be refused again
  }
}

const trackers = new Map<string, EventTracker>();

/** One tracker per API for the page, so every carousel shares the rate budget. */
export function trackerFor(apiUrl: string): EventTracker {
  let tracker = trackers.get(apiUrl);
  if (!tracker) {
    tracker = new EventTracker(apiUrl);
    trackers.set(apiUrl, tracker);
    const created = tracker;
    if (typeof window !== 'undefined') {
      window.addEventListener('pagehide', () => created.sendAllNow());
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'hidden') created.sendAllNow();
      });
    }
  }
  return tracker;
}
