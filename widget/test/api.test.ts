import { afterEach, describe, expect, it, vi } from 'vitest';

import { RecsysApiError, fetchRecommendations, recommendationsUrl } from '../src';
import { answer, fakeApi, json } from './helpers';

afterEach(() => vi.unstubAllGlobals());

describe('recommendationsUrl', () => {
  it('asks /recommend for a shopper, sending only what is set', () => {
    expect(recommendationsUrl({ apiUrl: 'https://api.shop/', userId: 'U 1', count: 8 })).toBe(
      'https://api.shop/recommend?user_id=U+1&k=8',
    );
  });

  it('asks /similar-items for an item, with the filters and diversity', () => {
    const url = new URL(
      recommendationsUrl({
        apiUrl: 'https://api.shop/v1',
        userId: 'U1',
        itemId: 'I7',
        filters: {
          category: ['Toys', 'Books'], brand: 'Kador', excludeIds: ['I1', 'I2'], excludeBrands: [],
          minPrice: 5, maxPrice: 50, maxPerCategory: 2, excludeSeen: false,
        },
        diversity: 0.3,
      }),
    );
    expect(url.pathname).toBe('/v1/similar-items');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      item_id: 'I7', k: '10', category: 'Toys,Books', brand: 'Kador', exclude_ids: 'I1,I2',
      min_price: '5', max_price: '50', max_per_category: '2', diversity_lambda: '0.7',
    });
  });

  it('passes exclude_seen to /recommend', () => {
    const url = recommendationsUrl({ apiUrl: 'http://a', userId: 'U1', filters: { excludeSeen: false } });
    expect(url).toContain('exclude_seen=false');
  });

  it('needs a shopper or an item', () => {
    expect(() => recommendationsUrl({ apiUrl: 'http://a' })).toThrow(RecsysApiError);
  });
});

describe('fetchRecommendations', () => {
  it("raises the API's error message and code", async () => {
    fakeApi([json({ error: 'not_found', message: "unknown item 'I9'", details: [] }, 404)]);
    const error = await fetchRecommendations({ apiUrl: 'http://a', itemId: 'I9' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RecsysApiError);
    expect(error).toMatchObject({ status: 404, code: 'not_found', message: "unknown item 'I9'" });
  });

  it('merges what fetchItemDetails adds over the answer', async () => {
    fakeApi([json(answer(['I1', 'I2']))]);
    const details = vi.fn(async (ids: string[]) => [{ item_id: ids[1]!, title: 'Kite', url: '/p/I2' }]);
    const result = await fetchRecommendations({ apiUrl: 'http://a', userId: 'U1', fetchItemDetails: details });
    expect(details).toHaveBeenCalledWith(['I1', 'I2'], expect.any(Array));
    expect(result.recommendations.map((item) => [item.title, item.url])).toEqual([
      ['Item I1', undefined],
      ['Kite', '/p/I2'],
    ]);
  });
});
