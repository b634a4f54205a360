import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

// The READMEs quote the sizes the last build measured; a build that changes them must not leave
// stale numbers behind.
const root = join(__dirname, '..');
const sizes = JSON.parse(readFileSync(join(root, 'size.json'), 'utf8')) as Record<string, { bytes: number; gzip_bytes: number }>;
const kB = (bytes: number) => `${(bytes / 1000).toFixed(1)} kB`;

describe('quoted bundle sizes', () => {
  it('match size.json in the widget README', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const file of ['dist/index.js', 'dist/index.cjs', 'dist/widget.js']) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${file}\``)) ?? '';
      expect(row, file).toContain(kB(sizes[file]!.bytes));
      expect(row, file).toContain(kB(sizes[file]!.gzip_bytes));
    }
  });

  it('match size.json in the product README, within the 12 kB budget', () => {
    const readme = readFileSync(join(root, '..', 'README.md'), 'utf8');
    expect(readme).toContain(`${kB(sizes['dist/index.js']!.gzip_bytes)} gzipped for the package`);
    expect(readme).toContain(`${kB(sizes['dist/widget.js']!.gzip_bytes)} for the script-tag bundle`);
    expect(sizes['dist/index.js']!.gzip_bytes).toBeLessThanOrEqual(12_000);
  });
});
