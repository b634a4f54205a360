import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The demo shop, served by the API itself under /demo (same origin, so no CORS setup).
export default defineConfig({
  plugins: [react()],
  root: 'demo',
  base: '/demo/',
  build: {
    outDir: '../dist-demo',
    emptyOutDir: true,
  },
});
