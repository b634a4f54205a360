// @vitest-environment node
import { renderToString } from 'react-dom/server';
import { describe, expect, it, vi } from 'vitest';

import { RecommendationCarousel } from '../src';

describe('server rendering', () => {
  it('renders the loading state without browser APIs or warnings', () => {
    const errors = vi.spyOn(console, 'error');
    const html = renderToString(<RecommendationCarousel apiUrl="http://api" userId="U1" count={4} />);
    expect(html).toContain('aria-roledescription="carousel"');
    expect(html).toContain('aria-busy="true"');
    expect(html).toContain('Recommended for you');
    expect(errors).not.toHaveBeenCalled();
  });
});
