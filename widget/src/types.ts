/** One recommended item as the API answers it, plus what `fetchItemDetails` may add. */
export interface RecommendedItem {
  item_id: string;
  score?: number;
  title?: string | null;
  category?: string | null;
  brand?: string | null;
  price?: number | null;
  img_url?: string | null;
  /** The product page; the card's title becomes a link to it. */
  url?: string | null;
}

/** The body of `GET /recommend` and `GET /similar-items`. */
export interface RecommendationsAnswer {
  user_id?: string;
  item_id?: string;
  source: string;
  recommendation_id: string;
  recommendations: RecommendedItem[];
}

/** Query filters of the API; each is sent only when set. Lists go comma-separated. */
export interface RecommendationFilters {
  /** Only these categories. */
  category?: string | string[];
  /** Only these brands. */
  brand?: string | string[];
  excludeCategories?: string[];
  excludeBrands?: string[];
  /** Never these items (e.g. what is already in the cart). */
  excludeIds?: string[];
  minPrice?: number;
  maxPrice?: number;
  /** At most this many items of one category. */
  maxPerCategory?: number;
  /** `/recommend` only: leave out what the shopper already had (the API's default is true). */
  excludeSeen?: boolean;
}

export type ItemDetailsFetcher = (
  itemIds: string[],
  items: RecommendedItem[],
) => Promise<Array<Partial<RecommendedItem> & { item_id: string }>>;

export interface RecommendationQuery {
  /** Base URL of the RecSys-Lite API, e.g. `https://shop.example/api` (no trailing slash needed). */
  apiUrl: string;
  /** The shopper: `/recommend` for them, and the user id of the events sent. */
  userId?: string;
  /** An item: `/similar-items` for it instead of `/recommend`. */
  itemId?: string;
  /** How many items to ask for (1 to 100). */
  count?: number;
  filters?: RecommendationFilters;
  /**
   * 0 (relevance only) to 1 (most varied): sent when set as the API's MMR trade-off,
   * `diversity_lambda` = 1 - diversity.
   */
  diversity?: number;
  /** Adds or overrides fields (title, price, images, url) from the shop's own catalog. */
  fetchItemDetails?: ItemDetailsFetcher;
}

export type WidgetEventType = 'impression' | 'click';

/** What the widget reports: to `POST /events` (unless `trackEvents` is false) and to `onEvent`. */
export interface WidgetEvent {
  type: WidgetEventType;
  item: RecommendedItem;
  /** 0-based place in the answer. */
  position: number;
  recommendationId: string;
  userId?: string;
}
