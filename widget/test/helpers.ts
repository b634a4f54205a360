import { vi } from 'vitest';

import type { RecommendationsAnswer } from '../src';

export function answer(ids: string[], recommendationId = 'abc123'): RecommendationsAnswer {
  return {
    user_id: 'U1',
    source: 'als',
    recommendation_id: recommendationId,
    recommendations: ids.map((id, index) => ({
      item_id: id,
      score: 1 - index / 10,
      title: `Item ${id}`,
      category: 'Toys',
      brand: 'Kador Toys',
      price: 12.5 + index,
      img_url: `https://img.test/${id}.jpg`,
    })),
  };
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

/** A fetch that answers GETs with `reads` in turn and records every POST /events body. */
export function fakeApi(reads: Array<Response | (() => Response)>) {
  const posted: Array<{ url: string; events: Array<Record<string, unknown>> }> = [];
  const gets: string[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    if (init?.method === 'POST') {
      posted.push({ url, events: (JSON.parse(String(init.body)) as { events: [] }).events });
      return json({ accepted: 1 });
    }
    gets.push(url);
    const next = reads.length > 1 ? reads.shift() : reads[0];
    if (!next) throw new TypeError('network down');
    return typeof next === 'function' ? next() : next.clone();
  });
  vi.stubGlobal('fetch', fetchMock);
  return { posted, gets, fetchMock };
}
