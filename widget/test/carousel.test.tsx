import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { RecommendationCarousel, type WidgetEvent, cardsPerView, useRecommendations } from '../src';
import { answer, fakeApi, json } from './helpers';

// jsdom has no layout: the test decides which cards the IntersectionObserver reports as seen
class FakeIntersectionObserver {
  static instances: FakeIntersectionObserver[] = [];
  readonly targets: Element[] = [];
  constructor(private readonly callback: IntersectionObserverCallback) {
    FakeIntersectionObserver.instances.push(this);
  }
  observe(target: Element) { this.targets.push(target); }
  unobserve(target: Element) { this.targets.splice(this.targets.indexOf(target), 1); }
  disconnect() { this.targets.length = 0; }
  show(positions: number[]) {
    const entries = this.targets
      .filter((target) => positions.includes(Number((target as HTMLElement).dataset.rlPosition)))
      .map((target) => ({ target, isIntersecting: true }) as unknown as IntersectionObserverEntry);
    this.callback(entries, this as unknown as IntersectionObserver);
  }
}

let api = 0;
const nextApi = () => `http://api-${(api += 1)}.test`; // each test its own event queue

beforeEach(() => {
  FakeIntersectionObserver.instances = [];
  vi.stubGlobal('IntersectionObserver', FakeIntersectionObserver);
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

const slides = () => screen.getAllByRole('group');

describe('RecommendationCarousel', () => {
  it('shows a skeleton, then the cards as labelled slides with titles, brands and prices', async () => {
    fakeApi([json(answer(['I1', 'I2', 'I3']))]);
    const { container } = render(
      <RecommendationCarousel apiUrl={nextApi()} userId="U1" count={3} locale="de-DE" currency="EUR" />,
    );
    const region = screen.getByRole('region', { name: 'Recommended for you' });
    expect(region?.getAttribute('aria-roledescription')).toBe('carousel');
    expect(region?.getAttribute('aria-busy')).toBe('true');
    expect(container.querySelectorAll('[data-testid="rl-skeleton"]')).toHaveLength(3);
    expect(screen.getByRole('status').textContent).toContain('Loading recommendations');

    await waitFor(() => expect(slides()).toHaveLength(3));
    expect(region?.getAttribute('aria-busy')).toBe('false');
    expect(slides().map((slide) => slide.getAttribute('aria-label'))).toEqual(['1 of 3', '2 of 3', '3 of 3']);
    expect(slides()[0]?.getAttribute('aria-roledescription')).toBe('slide');
    const first = within(slides()[0]!);
    expect(first.getByText('Item I1')).toBeTruthy();
    expect(first.getByText('Kador Toys')).toBeTruthy();
    expect(slides()[0]!.querySelector('.rl-price')?.textContent).toBe('12,50\u00a0€');
    const image = slides()[0]!.querySelector('img')!;
    expect(image?.getAttribute('loading')).toBe('lazy');
    expect(image?.getAttribute('src')).toBe('https://img.test/I1.jpg');
  });

  it('titles a similar-items carousel and asks /similar-items', async () => {
    const { gets } = fakeApi([json(answer(['I2']))]);
    render(<RecommendationCarousel apiUrl={nextApi()} itemId="I1" />);
    await waitFor(() => expect(slides()).toHaveLength(1));
    expect(screen.getByRole('heading', { name: 'Similar items' })).toBeTruthy();
    expect(gets[0]).toContain('/similar-items?item_id=I1');
  });

  it('offers a retry after an error, and shows the cards once it works', async () => {
    const { gets } = fakeApi([json({ error: 'internal', message: 'boom' }, 500), json(answer(['I1']))]);
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" />);
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('Recommendations could not be loaded.');
    fireEvent.click(within(alert).getByRole('button', { name: 'Try again' }));
    await waitFor(() => expect(slides()).toHaveLength(1));
    expect(gets).toHaveLength(2);
  });

  it('renders nothing for an empty answer unless given empty content', async () => {
    fakeApi([json(answer([]))]);
    const { container } = render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" />);
    await waitFor(() => expect(container.querySelector('section')).toBeNull());
    cleanup();
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" emptyContent="Nothing yet" />);
    expect(await screen.findByText('Nothing yet')).toBeTruthy();
  });

  it('replaces an image that fails to load with a placeholder', async () => {
    fakeApi([json(answer(['I1']))]);
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" />);
    await waitFor(() => expect(slides()).toHaveLength(1));
    fireEvent.error(slides()[0]!.querySelector('img')!);
    expect(slides()[0]!.querySelector('img')).toBeNull();
    expect(slides()[0]!.querySelector('[data-testid="rl-placeholder"]')?.getAttribute('aria-hidden')).toBe('true');
  });

  it('reports seen cards once and clicks at once, with the recommendation id and position', async () => {
    const { posted } = fakeApi([json(answer(['I1', 'I2', 'I3'], 'rec42'))]);
    const onEvent = vi.fn<(event: WidgetEvent) => void>();
    const onItemClick = vi.fn();
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" onEvent={onEvent} onItemClick={onItemClick} />);
    await waitFor(() => expect(slides()).toHaveLength(3));
    const observer = FakeIntersectionObserver.instances.at(-1)!;
    act(() => observer.show([0, 1]));
    act(() => observer.show([0, 1])); // seen again: not reported twice
    fireEvent.click(within(slides()[1]!).getByRole('button', { name: 'Item I2' }));
    expect(onItemClick).toHaveBeenCalledWith(expect.objectContaining({ item_id: 'I2' }), 1, expect.anything());
    await waitFor(() => expect(posted.flatMap((batch) => batch.events)).toHaveLength(3));
    const events = posted.flatMap((batch) => batch.events);
    expect(events[0]).toEqual({ user_id: 'U1', item_id: 'I2', event_type: 'click', recommendation_id: 'rec42', position: 1 });
    expect(events.slice(1).map((e) => [e.event_type, e.position])).toEqual([['impression', 0], ['impression', 1]]);
    expect(posted[0]!.url).toMatch(/\/events$/);
    expect(onEvent.mock.calls.map(([e]) => `${e.type}@${e.position}`)).toEqual(['impression@0', 'impression@1', 'click@1']);
  });

  it('sends nothing with trackEvents={false}, but still tells onEvent', async () => {
    const { posted } = fakeApi([json(answer(['I1']))]);
    const onEvent = vi.fn();
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" trackEvents={false} onEvent={onEvent} onItemClick={() => {}} />);
    await waitFor(() => expect(slides()).toHaveLength(1));
    act(() => FakeIntersectionObserver.instances.at(-1)!.show([0]));
    fireEvent.click(screen.getByRole('button', { name: 'Item I1' }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(posted).toHaveLength(0);
    expect(onEvent).toHaveBeenCalledTimes(2);
  });

  it('moves between cards with the arrow keys, Home and End', async () => {
    fakeApi([json(answer(['I1', 'I2', 'I3']))]);
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" fetchItemDetails={async (ids) => ids.map((id) => ({ item_id: id, url: `/p/${id}` }))} />);
    await waitFor(() => expect(screen.getAllByRole('link')).toHaveLength(3));
    const links = screen.getAllByRole('link');
    expect(links[0]?.getAttribute('href')).toBe('/p/I1');
    links[0]!.focus();
    fireEvent.keyDown(links[0]!, { key: 'ArrowRight' });
    expect(document.activeElement).toBe(links[1]);
    fireEvent.keyDown(links[1]!, { key: 'End' });
    expect(document.activeElement).toBe(links[2]);
    fireEvent.keyDown(links[2]!, { key: 'ArrowRight' });
    expect(document.activeElement).toBe(links[2]);
    fireEvent.keyDown(links[2]!, { key: 'Home' });
    expect(document.activeElement).toBe(links[0]);
  });

  it('takes a template and the classes for theming', async () => {
    fakeApi([json(answer(['I1', 'I2']))]);
    const { container } = render(
      <RecommendationCarousel
        apiUrl={nextApi()} userId="U1" title="For you" className="shop" containerClassName="row" cardClassName="tile"
        renderItem={(item, context) => <em>{`${context.position + 1}/${context.total} ${item.item_id} ${context.price}`}</em>}
        currency="USD" locale="en-US"
      />,
    );
    await waitFor(() => expect(screen.getByText('1/2 I1 $12.50')).toBeTruthy());
    expect(['rl-carousel', 'shop'].every((name) => screen.getByRole('region', { name: 'For you' })?.classList.contains(name))).toBe(true);
    expect(['row'].every((name) => container.querySelector('.rl-viewport')?.classList.contains(name))).toBe(true);
    expect(container.querySelectorAll('.rl-card.tile')).toHaveLength(2);
  });
});

describe('grid layout', () => {
  it('lists every card, with no carousel roles or buttons, and still reports what is seen', async () => {
    const { posted } = fakeApi([json(answer(['I1', 'I2', 'I3'], 'g1'))]);
    render(<RecommendationCarousel apiUrl={nextApi()} userId="U1" layout="grid" title="More toys" />);
    const list = await screen.findByRole('list');
    expect(within(list).getAllByRole('listitem')).toHaveLength(3);
    const region = screen.getByRole('region', { name: 'More toys' });
    expect(region.getAttribute('aria-roledescription')).toBeNull();
    expect(screen.queryByRole('group')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Next items' })).toBeNull();
    const observer = FakeIntersectionObserver.instances.at(-1)!;
    act(() => observer.show([2]));
    await waitFor(() => expect(posted.flatMap((batch) => batch.events)).toHaveLength(1), { timeout: 3000 });
    expect(posted[0]!.events[0]).toMatchObject({ event_type: 'impression', position: 2, recommendation_id: 'g1' });
  });
});

describe('cardsPerView', () => {
  it('fits 1 to 6 cards by width', () => {
    expect([300, 375, 768, 1152, 3000].map((width) => cardsPerView(width, 150, 6))).toEqual([1, 2, 4, 6, 6]);
  });
});

describe('useRecommendations', () => {
  function Plain({ apiUrl }: { apiUrl: string }) {
    const { status, items, source, trackClick } = useRecommendations({ apiUrl, userId: 'U1', count: 2 });
    if (status !== 'success') return <p>{status}</p>;
    return (
      <ul data-source={source}>
        {items.map((item, position) => (
          <li key={item.item_id}><button type="button" onClick={() => trackClick(position)}>{item.title}</button></li>
        ))}
      </ul>
    );
  }

  it('reports an impression once per answer and position, also without sending', async () => {
    const { posted } = fakeApi([json(answer(['I1', 'I2'], 'r5'))]);
    const onEvent = vi.fn();
    function Seen() {
      const { status, trackImpression } = useRecommendations({ apiUrl: 'http://x', userId: 'U1', trackEvents: false, onEvent });
      if (status !== 'success') return null;
      return <button type="button" onClick={() => [0, 0, 1, 0].forEach(trackImpression)}>seen</button>;
    }
    render(<Seen />);
    fireEvent.click(await screen.findByRole('button', { name: 'seen' }));
    fireEvent.click(screen.getByRole('button', { name: 'seen' }));
    expect(onEvent.mock.calls.map(([e]) => e.position)).toEqual([0, 1]);
    expect(posted).toHaveLength(0);
  });

  it('gives a shop its own markup, with the same events', async () => {
    const { posted } = fakeApi([json(answer(['I1', 'I2'], 'r9'))]);
    render(<Plain apiUrl={nextApi()} />);
    expect(screen.getByText('loading')).toBeTruthy();
    fireEvent.click(await screen.findByRole('button', { name: 'Item I2' }));
    expect(screen.getByRole('list')?.getAttribute('data-source')).toBe('als');
    await waitFor(() => expect(posted).toHaveLength(1));
    expect(posted[0]!.events[0]).toMatchObject({ item_id: 'I2', event_type: 'click', recommendation_id: 'r9', position: 1 });
  });
});
