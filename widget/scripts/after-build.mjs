// After the Vite builds: the demo's drawings and script-tag page, then the measured bundle
// sizes (size.json, quoted by the READMEs), failing the build over the size budget.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const demo = join(root, 'dist-demo');
const BUDGET_GZIP_BYTES = 12_000;

// --- one drawing per demo category: offline, a few hundred bytes each -----------------------
const categories = JSON.parse(readFileSync(join(root, 'demo', 'categories.json'), 'utf8'));
mkdirSync(join(demo, 'img'), { recursive: true });
const escape = (text) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
function drawing(label, product, seed) {
  const hue = (seed * 47) % 360;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="320" viewBox="0 0 320 320">
<rect width="320" height="320" fill="hsl(${hue} 55% 90%)"/>
<circle cx="160" cy="140" r="70" fill="hsl(${hue} 45% 62%)"/>
<rect x="95" y="190" width="130" height="34" rx="17" fill="hsl(${hue} 40% 40%)"/>
<text x="160" y="270" font-family="sans-serif" font-size="24" text-anchor="middle" fill="hsl(${hue} 40% 22%)">${escape(product)}</text>
<text x="160" y="150" font-family="sans-serif" font-size="40" font-weight="700" text-anchor="middle" fill="#fff">${escape(label.slice(0, 2))}</text>
</svg>\n`;
}
Object.entries(categories).forEach(([category, product], index) => {
  writeFileSync(join(demo, 'img', `${category}.svg`), drawing(category, product, index + 1));
});
writeFileSync(join(demo, 'img', 'item.svg'), drawing('?', 'Product', 0));

// --- the script-tag embed, served beside the demo ------------------------------------------
copyFileSync(join(dist, 'widget.js'), join(demo, 'widget.js'));
writeFileSync(
  join(demo, 'embed.html'),
  `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>RecSys-Lite script-tag embed</title><link rel="icon" href="data:,">
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:24px;color:#1d2129}</style></head>
<body>
<main>
<h1>A shop page without a React build</h1>
<p>Two lines of HTML: a <code>div</code> with the shopper's id and the widget's script.</p>
<div data-recsys-user="U00042" data-recsys-count="8" data-recsys-title="Picked for you"></div>
<p><a href="./">Back to the demo shop</a></p>
</main>
<script src="./widget.js" defer></script>
</body>
</html>
`,
);

// --- sizes --------------------------------------------------------------------------------
const measure = (file) => {
  const bytes = readFileSync(join(dist, file));
  return { bytes: bytes.length, gzip_bytes: gzipSync(bytes, { level: 9 }).length };
};
const sizes = {
  note: 'measured by `npm run build` (scripts/after-build.mjs); gzip level 9',
  'dist/index.js': { ...measure('index.js'), contents: 'the npm package (ESM), React not included' },
  'dist/index.cjs': { ...measure('index.cjs'), contents: 'the npm package (CJS), React not included' },
  'dist/widget.js': { ...measure('widget.js'), contents: 'the script-tag embed, React and ReactDOM included' },
  budget_gzip_bytes: BUDGET_GZIP_BYTES,
};
writeFileSync(join(root, 'size.json'), `${JSON.stringify(sizes, null, 2)}\n`);
const kb = (n) => `${(n / 1000).toFixed(1)} kB`;
for (const file of ['dist/index.js', 'dist/index.cjs', 'dist/widget.js']) {
  console.log(`size: ${file} ${kb(sizes[file].bytes)}, ${kb(sizes[file].gzip_bytes)} gzipped`);
}
if (sizes['dist/index.js'].gzip_bytes > BUDGET_GZIP_BYTES) {
  console.error(`size: dist/index.js is over the budget of ${kb(BUDGET_GZIP_BYTES)} gzipped`);
  process.exit(1);
}
