import {
  type KeyboardEvent,
  type MouseEvent,
  type ReactNode,
  useCallback,
  useEffect,
  useId,
  useLayoutEffect,
  useRef,
  useState,
} from 'react';

import { formatPrice } from './format';
import { injectStyles } from './styles';
import type { RecommendedItem } from './types';
import { type UseRecommendationsOptions, useRecommendations } from './useRecommendations';

export interface RenderItemContext {
  /** 0-based place in the answer. */
  position: number;
  total: number;
  /** The price as the carousel would show it (locale and currency props). */
  price: string;
}

export interface CarouselLabels {
  previous: string;
  next: string;
  retry: string;
  loading: string;
  error: string;
  /** The label of each slide, "3 of 10". */
  slide: (position: number, total: number) => string;
}

export interface RecommendationCarouselProps extends UseRecommendationsOptions {
  /** Heading and accessible name; default "Recommended for you", or "Similar items" with itemId. */
  title?: string;
  /**
   * `carousel` (default): one scrolling row with previous/next buttons and arrow keys.
   * `grid`: every card at once, in rows of as many as fit (a list, not a carousel).
   */
  layout?: 'carousel' | 'grid';
  /** On the outer element (the carousel). */
  className?: string;
  /** On the scrolling row of cards. */
  containerClassName?: string;
  /** On every card. */
  cardClassName?: string;
  onItemClick?: (item: RecommendedItem, position: number, event: MouseEvent<HTMLElement>) => void;
  /** The inside of a card, instead of image, title, brand and price. */
  renderItem?: (item: RecommendedItem, context: RenderItemContext) => ReactNode;
  /** Locale of prices (default: the browser's). */
  locale?: string;
  /** ISO 4217 code of prices (default USD). */
  currency?: string;
  /** Cards side by side at most; fewer as the carousel gets narrower (default 6). */
  maxVisible?: number;
  /** A card is never narrower than this, in pixels (default 150). */
  minCardWidth?: number;
  /** Shown when there is nothing to recommend; without it the carousel renders nothing. */
  emptyContent?: ReactNode;
  headingLevel?: 2 | 3 | 4 | 5 | 6;
  labels?: Partial<CarouselLabels>;
}

const DEFAULT_LABELS: CarouselLabels = {
  previous: 'Previous items',
  next: 'Next items',
  retry: 'Try again',
  loading: 'Loading recommendations',
  error: 'Recommendations could not be loaded.',
  slide: (position, total) => `${position} of ${total}`,
};

const GAP_PX = 16;

// layout effects measure before paint in the browser; on a server (SSR) React 18 warns about them
const useBrowserLayoutEffect = typeof window === 'undefined' ? useEffect : useLayoutEffect;

function cx(...names: Array<string | undefined | false>): string {
  return names.filter(Boolean).join(' ');
}

function ImageOrPlaceholder({ src }: { src: string | null | undefined }) {
  const [failed, setFailed] = useState(false);
  useEffect(() => setFailed(false), [src]);
  if (!src || failed) {
    return (
      <div className="rl-image rl-image-placeholder" aria-hidden="true" data-testid="rl-placeholder">
        <svg width="40" height="40" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="1.5">
          <rect x="3" y="4" width="18" height="16" rx="2" />
          <circle cx="9" cy="10" r="2" />
          <path d="M21 17l-5-5-9 8" />
        </svg>
      </div>
    );
  }
  // alt="": the title next to it already names the item for screen readers
  return <img className="rl-image" src={src} alt="" loading="lazy" decoding="async" onError={() => setFailed(true)} />;
}

/** Cards that fit side by side in `width` pixels, from 1 to `max`. */
export function cardsPerView(width: number, minCardWidth: number, max: number): number {
  if (!(width > 0)) return max;
  return Math.max(1, Math.min(max, Math.floor((width + GAP_PX) / (minCardWidth + GAP_PX))));
}

/**
 * A recommendations carousel following the WAI-ARIA carousel pattern: a labelled region with
 * "N of M" slides, previous/next buttons and arrow keys; it reports impressions (cards
 * actually seen) and clicks with the answer's recommendation id, so the next answer learns.
 */
function edgesOf(viewport: HTMLElement): { atStart: boolean; atEnd: boolean } {
  return {
    atStart: viewport.scrollLeft <= 1,
    atEnd: viewport.scrollLeft + viewport.clientWidth >= viewport.scrollWidth - 1,
  };
}

export function RecommendationCarousel(props: RecommendationCarouselProps) {
  const {
    title, className, containerClassName, cardClassName, onItemClick, renderItem, locale,
    currency, maxVisible = 6, minCardWidth = 150, emptyContent, headingLevel = 2,
    layout = 'carousel',
  } = props;
  const grid = layout === 'grid';
  const labels = { ...DEFAULT_LABELS, ...props.labels };
  const result = useRecommendations(props);
  const { status, items, trackImpression, trackClick } = result;
  const rootRef = useRef<HTMLElement>(null);
  const viewportRef = useRef<HTMLElement | null>(null);
  const [perView, setPerView] = useState(maxVisible);
  const [edges, setEdges] = useState({ atStart: true, atEnd: true });
  const headingId = useId();
  const viewportId = useId();
  const heading = title ?? (props.itemId ? 'Similar items' : 'Recommended for you');
  const Heading = `h${headingLevel}` as const;

  useBrowserLayoutEffect(injectStyles, []);

  useBrowserLayoutEffect(() => {
    const root = rootRef.current;
    if (!root) return undefined;
    const measure = () => setPerView(cardsPerView(root.clientWidth, minCardWidth, maxVisible));
    measure();
    if (typeof ResizeObserver === 'undefined') return undefined;
    const observer = new ResizeObserver(measure);
    observer.observe(root);
    return () => observer.disconnect();
  }, [minCardWidth, maxVisible, status]);

  const updateEdges = useCallback(() => {
    const viewport = viewportRef.current;
    if (!viewport) return;
    const { atStart, atEnd } = edgesOf(viewport);
    setEdges((previous) =>
      previous.atStart === atStart && previous.atEnd === atEnd ? previous : { atStart, atEnd },
    );
  }, []);

  useEffect(updateEdges, [updateEdges, items, perView]);

  // an impression is a card at least half on screen, once per answer and place
  useEffect(() => {
    const viewport = viewportRef.current;
    if (status !== 'success' || !viewport) return undefined;
    const cards = Array.from(viewport.querySelectorAll<HTMLElement>('[data-rl-position]'));
    if (typeof IntersectionObserver === 'undefined') {
      cards.slice(0, perView).forEach((card) => trackImpression(Number(card.dataset.rlPosition)));
      return undefined;
    }
    const observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          trackImpression(Number((entry.target as HTMLElement).dataset.rlPosition));
          observer.unobserve(entry.target);
        }
      },
      // the page's viewport, not the row: a card scrolled out of the row is clipped by it, and
      // a carousel below the fold shows nothing yet
      { threshold: 0.5 },
    );
    cards.forEach((card) => observer.observe(card));
    return () => observer.disconnect();
  }, [status, items, trackImpression, perView]);

  const page = (direction: 1 | -1) => {
    const viewport = viewportRef.current;
    if (!viewport) return;
    // where the row is now, not where it was at the last render: a key that has just
    // scrolled it to an edge and back may not have re-rendered the buttons yet
    const { atStart, atEnd } = edgesOf(viewport);
    if (direction === 1 ? atEnd : atStart) {
      updateEdges(); // the buttons' state may be the stale one: correct it
      return;
    }
    viewport.scrollBy({ left: direction * viewport.clientWidth });
    // jsdom and some browsers fire no scroll event for a no-op scroll
    window.setTimeout(updateEdges, 400);
  };

  const onKeyDown = (event: KeyboardEvent<HTMLElement>) => {
    const keys: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, Home: -Infinity, End: Infinity };
    const step = keys[event.key];
    if (step === undefined || status !== 'success') return;
    // a template's own field (a quantity box) keeps its arrow keys
    const target = event.target as HTMLElement;
    if (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName)) return;
    const viewport = viewportRef.current;
    const cards = Array.from(viewport?.querySelectorAll<HTMLElement>('[data-rl-position]') ?? []);
    const current = cards.findIndex((card) => card.contains(document.activeElement));
    if (current === -1) {
      // on the buttons: the arrows page like the buttons do
      if (Math.abs(step) === 1) {
        event.preventDefault();
        page(step as 1 | -1);
      }
      return;
    }
    event.preventDefault();
    const card = cards[Math.max(0, Math.min(cards.length - 1, current + step))];
    const focusable = card?.querySelector<HTMLElement>('a[href],button') ?? card;
    focusable?.focus();
  };

  if (status === 'success' && items.length === 0) {
    if (emptyContent === undefined) return null;
    return (
      <section className={cx('rl-carousel', className)} aria-labelledby={headingId}>
        <Heading id={headingId} className="rl-title">{heading}</Heading>
        <div className="rl-status">{emptyContent}</div>
      </section>
    );
  }
  if (status === 'idle') return null;

  const total = items.length;
  // a grid is a plain list; a carousel's row and slides carry the pattern's roles instead
  const Row = grid ? 'ul' : 'div';
  const Card = grid ? 'li' : 'div';
  const controlsDisabled = status !== 'success' || (edges.atStart && edges.atEnd);
  return (
    <section
      ref={rootRef}
      className={cx('rl-carousel', className)}
      aria-roledescription={grid ? undefined : 'carousel'}
      aria-labelledby={headingId}
      aria-busy={status === 'loading'}
      onKeyDown={grid ? undefined : onKeyDown}
      style={{ ['--rl-per-view' as string]: String(perView) }}
      data-status={status}
    >
      <div className="rl-header">
        <Heading id={headingId} className="rl-title">{heading}</Heading>
        {status === 'success' && !grid && !controlsDisabled && (
          <div className="rl-controls">
            <button
              type="button" className="rl-button rl-previous" aria-label={labels.previous}
              aria-controls={viewportId} aria-disabled={edges.atStart}
              onClick={() => page(-1)}
            >
              <span aria-hidden="true">‹</span>
            </button>
            <button
              type="button" className="rl-button rl-next" aria-label={labels.next}
              aria-controls={viewportId} aria-disabled={edges.atEnd}
              onClick={() => page(1)}
            >
              <span aria-hidden="true">›</span>
            </button>
          </div>
        )}
      </div>
      {status === 'loading' && (
        <div className={cx(grid ? 'rl-grid' : 'rl-viewport', containerClassName)} aria-hidden="true">
          {Array.from({ length: Math.min(props.count ?? 10, perView) }, (_, index) => (
            <div key={index} className={cx('rl-card', cardClassName)} data-testid="rl-skeleton">
              <div className="rl-image rl-skeleton" />
              <div className="rl-skeleton rl-skeleton-line" />
              <div className="rl-skeleton rl-skeleton-line" style={{ width: '60%' }} />
            </div>
          ))}
        </div>
      )}
      {status === 'loading' && <span className="rl-visually-hidden" role="status">{labels.loading}</span>}
      {status === 'error' && (
        <div className="rl-status" role="alert">
          <span>{labels.error}</span>
          <button type="button" className="rl-button" onClick={result.reload} style={{ padding: '0 14px' }}>
            {labels.retry}
          </button>
        </div>
      )}
      {status === 'success' && (
        <Row
          ref={(node: HTMLElement | null) => {
            viewportRef.current = node;
          }}
          id={viewportId}
          className={cx(grid ? 'rl-grid' : 'rl-viewport', containerClassName)}
          aria-live={grid ? undefined : 'polite'}
          onScroll={grid ? undefined : updateEdges}
        >
          {items.map((item, position) => {
            const price = formatPrice(item.price, locale, currency);
            const name = item.title ?? item.item_id;
            const interactive = Boolean(item.url) || Boolean(onItemClick);
            return (
              <Card
                key={`${item.item_id}-${position}`}
                role={grid ? undefined : 'group'}
                aria-roledescription={grid ? undefined : 'slide'}
                aria-label={grid ? undefined : labels.slide(position + 1, total)}
                className={cx('rl-card', cardClassName)}
                data-rl-position={position}
                data-item-id={item.item_id}
                // a carousel's cards scroll into view by focus, so each must take it
                tabIndex={interactive || grid ? undefined : 0}
                onClick={(event) => {
                  trackClick(position);
                  onItemClick?.(item, position, event);
                }}
              >
                {renderItem ? (
                  renderItem(item, { position, total, price })
                ) : (
                  <>
                    <ImageOrPlaceholder src={item.img_url} />
                    {item.url ? (
                      <a className="rl-card-link rl-item-title" href={item.url}>{name}</a>
                    ) : onItemClick ? (
                      <button type="button" className="rl-card-link rl-item-title">{name}</button>
                    ) : (
                      <span className="rl-item-title">{name}</span>
                    )}
                    {item.brand && <span className="rl-meta">{item.brand}</span>}
                    {price && <span className="rl-price">{price}</span>}
                  </>
                )}
              </Card>
            );
          })}
        </Row>
      )}
    </section>
  );
}
