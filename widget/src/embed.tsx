/**
 * The script-tag embed for shops without a React build:
 *   <div data-recsys-user="U00042"></div>
 *   <script src="https://api.shop.example/demo/widget.js" defer></script>
 * Every element with `data-recsys-user` or `data-recsys-item` becomes a carousel. The API is
 * `data-recsys-api` (on the element or the script tag), else the origin the script came from.
 */
import { createRoot, type Root } from 'react-dom/client';

import { RecommendationCarousel, type RecommendationCarouselProps } from './RecommendationCarousel';

const script = document.currentScript as HTMLScriptElement | null;
const scriptApi = script?.dataset.recsysApi ?? (script?.src ? new URL(script.src).origin : window.location.origin);
const roots = new WeakMap<Element, Root>();

function numberOf(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : undefined;
}

/** The carousel's props from an element's `data-recsys-*` attributes. */
export function propsFromElement(element: HTMLElement): RecommendationCarouselProps {
  const data = element.dataset;
  return {
    apiUrl: data.recsysApi ?? scriptApi,
    userId: data.recsysUser || undefined,
    itemId: data.recsysItem || undefined,
    count: numberOf(data.recsysCount),
    title: data.recsysTitle,
    filters: {
      category: data.recsysCategory,
      brand: data.recsysBrand,
      minPrice: numberOf(data.recsysMinPrice),
      maxPrice: numberOf(data.recsysMaxPrice),
    },
    diversity: numberOf(data.recsysDiversity),
    currency: data.recsysCurrency,
    locale: data.recsysLocale,
    layout: data.recsysLayout === 'grid' ? 'grid' : 'carousel',
    trackEvents: data.recsysTrack !== 'false',
    className: data.recsysClass,
  };
}

/** Renders (or re-renders) a carousel into `element`. */
export function mount(element: HTMLElement, props: RecommendationCarouselProps = propsFromElement(element)): void {
  let root = roots.get(element);
  if (!root) {
    root = createRoot(element);
    roots.set(element, root);
  }
  root.render(<RecommendationCarousel {...props} />);
}

/** Mounts every `data-recsys-user` / `data-recsys-item` element of the page. */
export function scan(): void {
  document.querySelectorAll<HTMLElement>('[data-recsys-user],[data-recsys-item]').forEach((element) => mount(element));
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
else scan();
