import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { fetchRecommendations } from './api';
import { trackerFor } from './tracker';
import type {
  RecommendationQuery,
  RecommendationsAnswer,
  RecommendedItem,
  WidgetEvent,
  WidgetEventType,
} from './types';

export interface UseRecommendationsOptions extends RecommendationQuery {
  /** Send impressions and clicks to `POST /events` (needs `userId`). */
  trackEvents?: boolean;
  /** Every impression and click, also when `trackEvents` is false (for the shop's analytics). */
  onEvent?: (event: WidgetEvent) => void;
  /** Skip the request (e.g. until the shopper's id is known). */
  enabled?: boolean;
}

export type RecommendationsStatus = 'idle' | 'loading' | 'error' | 'success';

export interface UseRecommendationsResult {
  status: RecommendationsStatus;
  items: RecommendedItem[];
  recommendationId: string | undefined;
  /** The model that answered, or `popular` for a shopper it does not know. */
  source: string | undefined;
  error: Error | undefined;
  /** Asks again (the error state's retry; after a click to show the changed list). */
  reload: () => void;
  /** Report that the item at `position` was shown to the shopper (sent once per answer). */
  trackImpression: (position: number) => void;
  /** Report a click on the item at `position`. */
  trackClick: (position: number) => void;
}

/**
 * Headless recommendations: the request, its states and the attribution events, for a shop
 * that renders its own markup. `RecommendationCarousel` is built on it.
 */
export function useRecommendations(options: UseRecommendationsOptions): UseRecommendationsResult {
  const { apiUrl, userId, itemId, count, filters, diversity, enabled = true } = options;
  const [state, setState] = useState<{
    status: RecommendationsStatus;
    answer?: RecommendationsAnswer;
    error?: Error;
  }>({ status: enabled ? 'loading' : 'idle' });
  const [attempt, setAttempt] = useState(0);
  // callbacks are read when used, so a new function each render does not refetch
  const latest = useRef(options);
  latest.current = options;
  const filterKey = JSON.stringify(filters ?? {});

  useEffect(() => {
    if (!enabled) {
      setState({ status: 'idle' });
      return undefined;
    }
    const controller = new AbortController();
    setState((previous) => ({ status: 'loading', answer: previous.answer }));
    fetchRecommendations(
      {
        apiUrl, userId, itemId, count, diversity,
        filters: JSON.parse(filterKey) as RecommendationQuery['filters'],
        fetchItemDetails: latest.current.fetchItemDetails,
      },
      controller.signal,
    ).then(
      (answer) => {
        if (!controller.signal.aborted) setState({ status: 'success', answer });
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        setState({ status: 'error', error: error instanceof Error ? error : new Error(String(error)) });
      },
    );
    return () => controller.abort();
  }, [apiUrl, userId, itemId, count, diversity, filterKey, enabled, attempt]);

  const answer = state.status === 'success' ? state.answer : undefined;
  // impressions already reported, so a card seen again (or re-observed) is not counted twice
  const shown = useRef(new Set<string>());

  const report = useCallback(
    (type: WidgetEventType, position: number) => {
      const item = answer?.recommendations[position];
      if (!answer || !item) return;
      if (type === 'impression') {
        const key = `${answer.recommendation_id}\u0000${position}`;
        if (shown.current.has(key)) return;
        shown.current.add(key);
      }
      const { trackEvents = true, onEvent, userId: user } = latest.current;
      let fresh = true;
      if (trackEvents && user) {
        fresh = trackerFor(latest.current.apiUrl).track({
          user_id: user,
          item_id: item.item_id,
          event_type: type,
          recommendation_id: answer.recommendation_id,
          position,
        });
      }
      if (fresh) {
        onEvent?.({ type, item, position, recommendationId: answer.recommendation_id, userId: user });
      }
    },
    [answer],
  );

  return useMemo(
    () => ({
      status: state.status,
      items: answer?.recommendations ?? [],
      recommendationId: answer?.recommendation_id,
      source: answer?.source,
      error: state.error,
      reload: () => setAttempt((n) => n + 1),
      trackImpression: (position: number) => report('impression', position),
      trackClick: (position: number) => report('click', position),
    }),
    [state, answer, report],
  );
}
