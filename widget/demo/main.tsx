import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { RecommendationCarousel, formatPrice, type RecommendedItem } from '../src';
import categories from './categories.json';

// The demo runs from the API itself (/demo), so the API is this page's origin unless ?api= says.
const params = new URLSearchParams(window.location.search);
const API = params.get('api') ?? window.location.origin;
const SHOPPERS = ['U00042', 'U00007', 'U00123', 'U00300', 'U00511'];
const NEW_SHOPPER = 'new-shopper';

function imageOf(category: string | null | undefined): string {
  // the demo catalog's image links point nowhere; these drawings ship with the demo instead
  return category && category in categories ? `img/${encodeURIComponent(category)}.svg` : 'img/item.svg';
}

async function demoDetails(_ids: string[], items: RecommendedItem[]) {
  return items.map((item) => ({ item_id: item.item_id, url: `#/item/${encodeURIComponent(item.item_id)}`, img_url: imageOf(item.category) }));
}

function useHashRoute(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const onChange = () => setHash(window.location.hash);
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return hash;
}

interface CatalogItem extends RecommendedItem {
  description?: string | null;
}

function ProductPage({ itemId, userId }: { itemId: string; userId: string }) {
  const [item, setItem] = useState<CatalogItem | null | undefined>(undefined);
  useEffect(() => {
    setItem(undefined);
    window.scrollTo(0, 0);
    fetch(`${API}/items/${encodeURIComponent(itemId)}`)
      .then((response) => (response.ok ? (response.json() as Promise<CatalogItem>) : null))
      .then(setItem, () => setItem(null));
  }, [itemId]);
  if (item === undefined) return <p>Loading…</p>;
  if (item === null) return <p>This product does not exist. <a href="#/">Back to the shop</a></p>;
  return (
    <>
      <article className="hero">
        <img src={imageOf(item.category)} alt="" width={320} height={320} />
        <div>
          <h1>{item.title ?? item.item_id}</h1>
          <p className="muted">{[item.brand, item.category].filter(Boolean).join(' · ')}</p>
          <p className="price">{formatPrice(item.price, 'en-US', 'USD')}</p>
          {item.description && <p>{item.description}</p>}
          <p><a href="#/">← Back to recommendations</a></p>
        </div>
      </article>
      <RecommendationCarousel
        apiUrl={API} itemId={itemId} userId={userId} count={12} title="Similar items"
        fetchItemDetails={demoDetails} currency="USD" locale="en-US"
      />
      {item.category && (
        <RecommendationCarousel
          apiUrl={API} userId={userId} count={6} layout="grid" title={`More in ${item.category}`}
          filters={{ category: item.category, excludeIds: [itemId] }}
          fetchItemDetails={demoDetails} currency="USD" locale="en-US" headingLevel={2}
        />
      )}
    </>
  );
}

interface SearchHit {
  item_id: string;
  title?: string | null;
  price?: number | null;
}

function SearchBox({ userId }: { userId: string }) {
  const [query, setQuery] = useState('');
  const [answer, setAnswer] = useState<{ hits?: SearchHit[]; error?: string } | null>(null);
  const search = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!query.trim()) return;
    const params = new URLSearchParams({ q: query, k: '12', user_id: userId });
    try {
      const response = await fetch(`${API}/search?${params}`);
      const body = (await response.json()) as { results?: SearchHit[]; message?: string };
      setAnswer(response.ok ? { hits: body.results ?? [] } : { error: body.message ?? `error ${response.status}` });
    } catch {
      setAnswer({ error: 'the API did not answer' });
    }
  };
  return (
    <section className="panel" aria-labelledby="search-heading">
      <h2 id="search-heading">Search</h2>
      <form role="search" onSubmit={search}>
        <label>Find a product <input type="search" value={query} onChange={(e) => setQuery(e.target.value)} /></label>{' '}
        <button type="submit">Search</button>
      </form>
      <div aria-live="polite">
        {answer?.error && <p>Search is not available right now: {answer.error}</p>}
        {answer?.hits && (answer.hits.length === 0 ? <p>Nothing found.</p> : (
          <ul className="results">
            {answer.hits.map((hit) => (
              <li key={hit.item_id}>
                <a href={`#/item/${encodeURIComponent(hit.item_id)}`}>{hit.title ?? hit.item_id}</a>{' '}
                <span className="muted">{formatPrice(hit.price, 'en-US', 'USD')}</span>
              </li>
            ))}
          </ul>
        ))}
      </div>
    </section>
  );
}

function App() {
  const route = useHashRoute();
  const [shopper, setShopper] = useState(params.get('user') ?? SHOPPERS[0]!);
  const [hasSearch, setHasSearch] = useState(false);
  useEffect(() => {
    // the search box appears once the API has a /search endpoint
    fetch(`${API}/openapi.json`)
      .then((response) => response.json() as Promise<{ paths?: Record<string, unknown> }>)
      .then((schema) => setHasSearch(Boolean(schema.paths?.['/search'])), () => setHasSearch(false));
  }, []);
  const choose = (value: string) => {
    setShopper(value);
    const next = new URLSearchParams(window.location.search);
    next.set('user', value);
    window.history.replaceState(null, '', `?${next}${window.location.hash}`);
  };
  const itemId = route.startsWith('#/item/') ? decodeURIComponent(route.slice('#/item/'.length)) : undefined;
  return (
    <>
      <header>
        <a href="#/">RecSys-Lite demo shop</a>
        <label>
          Shopping as
          <select value={shopper} onChange={(event) => choose(event.target.value)}>
            {[...new Set([shopper, ...SHOPPERS])].filter((id) => id !== NEW_SHOPPER).map((id) => <option key={id} value={id}>{id}</option>)}
            <option value={NEW_SHOPPER}>a new shopper</option>
          </select>
        </label>
      </header>
      <main>
        {itemId ? (
          <ProductPage itemId={itemId} userId={shopper} />
        ) : (
          <>
            <h1>{shopper === NEW_SHOPPER ? 'Welcome to the shop' : `Welcome back, ${shopper}`}</h1>
            <RecommendationCarousel
              apiUrl={API} userId={shopper} count={12} title="Recommended for you"
              fetchItemDetails={demoDetails} currency="USD" locale="en-US"
            />
            <p className="muted">
              Pick a card: the click is sent to the API, and coming back here shows the changed list.
              The same carousel as a plain script tag: <a href="embed.html">embed demo</a>.
            </p>
          </>
        )}
        {hasSearch && <SearchBox userId={shopper} />}
      </main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(<StrictMode><App /></StrictMode>);
