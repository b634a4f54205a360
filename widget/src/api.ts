import type { RecommendationQuery, RecommendationsAnswer } from './types';

/** An error answer of the API (`{error, message, details}`) or a failed request. */
export class RecsysApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(message: string, status: number, code: string) {
    super(message);
    this.name = 'RecsysApiError';
    this.status = status;
    this.code = code;
  }
}

export function joinUrl(apiUrl: string, path: string): string {
  return apiUrl.replace(/\/+$/, '') + path;
}

/** The request URL; a parameter left unset is not sent, so the API's own default applies. */
export function recommendationsUrl(query: RecommendationQuery): string {
  const params = new URLSearchParams();
  const similar = query.itemId !== undefined && query.itemId !== '';
  if (similar) params.set('item_id', query.itemId as string);
  else if (query.userId !== undefined) params.set('user_id', query.userId);
  else throw new RecsysApiError('userId or itemId is required', 0, 'bad_request');
  params.set('k', String(query.count ?? 10));
  const filters = query.filters ?? {};
  const list = (name: string, value: string | string[] | undefined) => {
    const joined = Array.isArray(value) ? value.join(',') : value;
    if (joined) params.set(name, joined);
  };
  const number = (name: string, value: number | undefined) => {
    if (value !== undefined && Number.isFinite(value)) params.set(name, String(value));
  };
  list('category', filters.category);
  list('brand', filters.brand);
  list('exclude_categories', filters.excludeCategories);
  list('exclude_brands', filters.excludeBrands);
  list('exclude_ids', filters.excludeIds);
  number('min_price', filters.minPrice);
  number('max_price', filters.maxPrice);
  number('max_per_category', filters.maxPerCategory);
  if (!similar && filters.excludeSeen !== undefined) {
    params.set('exclude_seen', String(filters.excludeSeen));
  }
  if (query.diversity !== undefined && Number.isFinite(query.diversity)) {
    // the API's lambda weighs relevance; rounded so 0.3 is not sent as 0.7000000000000001
    const lambda = 1 - Math.min(1, Math.max(0, query.diversity));
    params.set('diversity_lambda', String(Math.round(lambda * 1e6) / 1e6));
  }
  return joinUrl(query.apiUrl, `${similar ? '/similar-items' : '/recommend'}?${params}`);
}

async function errorOf(response: Response): Promise<RecsysApiError> {
  let message = `${response.status} ${response.statusText}`.trim();
  let code = 'http_error';
  try {
    const body = (await response.json()) as { error?: unknown; message?: unknown };
    if (typeof body.message === 'string') message = body.message;
    if (typeof body.error === 'string') code = body.error;
  } catch {
    // not JSON (a proxy's error page): the status line is all there is
  }
  return new RecsysApiError(message, response.status, code);
}

export async function fetchRecommendations(
  query: RecommendationQuery,
  signal?: AbortSignal,
): Promise<RecommendationsAnswer> {
  const response = await fetch(recommendationsUrl(query), {
    signal,
    headers: { Accept: 'application/json' },
    credentials: 'omit',
  });
  if (!response.ok) throw await errorOf(response);
  const answer = (await response.json()) as RecommendationsAnswer;
  if (!query.fetchItemDetails || answer.recommendations.length === 0) return answer;
  const details = await query.fetchItemDetails(
    answer.recommendations.map((item) => item.item_id),
    answer.recommendations,
  );
  const byId = new Map(details.map((detail) => [detail.item_id, detail]));
  return {
    ...answer,
    recommendations: answer.recommendations.map((item) => ({ ...item, ...byId.get(item.item_id) })),
  };
}
