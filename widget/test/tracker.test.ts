import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { type ApiEvent, EventTracker } from '../src';
import { json } from './helpers';

function event(type: ApiEvent['event_type'], position: number, recommendationId = 'r1'): ApiEvent {
  return { user_id: 'U1', item_id: `I${position}`, event_type: type, recommendation_id: recommendationId, position };
}

function recorder(statuses: Array<[number, Record<string, string>?]> = []) {
  const batches: ApiEvent[][] = [];
  const fetchImpl = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
    batches.push((JSON.parse(String(init?.body)) as { events: ApiEvent[] }).events);
    const [status, headers] = statuses.shift() ?? [200];
    return json({}, status, headers);
  });
  return { batches, fetchImpl };
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('EventTracker', () => {
  it('sends impressions about once a second, in small batches, once per shown card', async () => {
    const { batches, fetchImpl } = recorder();
    const tracker = new EventTracker('http://api/', { fetchImpl, maxBatch: 5 });
    for (let position = 0; position < 7; position += 1) tracker.track(event('impression', position));
    expect(tracker.track(event('impression', 3))).toBe(false);
    expect(tracker.track(event('impression', 3, 'r2'))).toBe(true); // another answer: a new showing
    await vi.advanceTimersByTimeAsync(900);
    expect(batches).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(200);
    expect(batches.map((b) => b.length)).toEqual([5]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(batches.map((b) => b.length)).toEqual([5, 3]);
    expect(fetchImpl.mock.calls[0]?.[0]).toBe('http://api/events');
    expect(fetchImpl.mock.calls[0]?.[1]).toMatchObject({ method: 'POST', keepalive: true });
  });

  it('sends a click at once, ahead of waiting impressions', async () => {
    const { batches, fetchImpl } = recorder();
    const tracker = new EventTracker('http://api', { fetchImpl, maxBatch: 2 });
    tracker.track(event('impression', 0));
    tracker.track(event('impression', 1));
    tracker.track(event('click', 1));
    await vi.advanceTimersByTimeAsync(0);
    expect(batches[0]?.map((e) => e.event_type)).toEqual(['click', 'impression']);
  });

  it('waits out a 429 for its Retry-After, then sends the same events', async () => {
    const { batches, fetchImpl } = recorder([[429, { 'Retry-After': '3' }]]);
    const tracker = new EventTracker('http://api', { fetchImpl });
    tracker.track(event('click', 0));
    await vi.advanceTimersByTimeAsync(0);
    expect(batches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2500);
    expect(batches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1600);
    expect(batches).toHaveLength(2);
    expect(batches[1]).toEqual(batches[0]);
    expect(tracker.pending).toBe(0);
  });

  it('retries a failed send a few times, and drops what the API refuses as invalid', async () => {
    const { batches, fetchImpl } = recorder([[503], [503], [503], [422]]);
    const tracker = new EventTracker('http://api', { fetchImpl, maxAttempts: 3 });
    tracker.track(event('click', 0));
    await vi.advanceTimersByTimeAsync(20_000);
    expect(batches).toHaveLength(3);
    tracker.track(event('click', 1));
    await vi.advanceTimersByTimeAsync(20_000);
    expect(batches).toHaveLength(4);
    expect(tracker.pending).toBe(0);
  });

  it('sends everything at once when the page goes away, unless told to wait', async () => {
    const { batches, fetchImpl } = recorder([[429, { 'Retry-After': '5' }]]);
    const tracker = new EventTracker('http://api', { fetchImpl, maxBatch: 5 });
    tracker.track(event('click', 0));
    await vi.advanceTimersByTimeAsync(0);
    for (let position = 0; position < 12; position += 1) tracker.track(event('impression', position));
    tracker.sendAllNow();
    expect(batches).toHaveLength(1); // still within the 429's Retry-After
    await vi.advanceTimersByTimeAsync(5000);
    tracker.sendAllNow();
    await vi.advanceTimersByTimeAsync(0);
    const delivered = batches.slice(1).flat();
    expect(delivered).toHaveLength(13); // the click and 12 impressions, each once
    expect(new Set(delivered.map((e) => `${e.event_type}${e.position}`)).size).toBe(13);
    expect(batches.slice(1).every((batch) => batch.length <= 5)).toBe(true);
    expect(tracker.pending).toBe(0);
  });
});
