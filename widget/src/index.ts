export { RecommendationCarousel, cardsPerView } from './RecommendationCarousel';
export type { CarouselLabels, RecommendationCarouselProps, RenderItemContext } from './RecommendationCarousel';
export { useRecommendations } from './useRecommendations';
export type {
  RecommendationsStatus,
  UseRecommendationsOptions,
  UseRecommendationsResult,
} from './useRecommendations';
export { RecsysApiError, fetchRecommendations, recommendationsUrl } from './api';
export { EventTracker, trackerFor } from './tracker';
export type { ApiEvent, TrackerOptions } from './tracker';
export { formatPrice } from './format';
export { CSS as defaultStyles } from './styles';
export type {
  ItemDetailsFetcher,
  RecommendationFilters,
  RecommendationQuery,
  RecommendationsAnswer,
  RecommendedItem,
  WidgetEvent,
  WidgetEventType,
} from './types';
