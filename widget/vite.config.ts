import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// The npm package: ESM and CJS, React left to the host page (a peer dependency).
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
    lib: {
      entry: 'src/index.ts',
      formats: ['es', 'cjs'],
      fileName: (format) => (format === 'es' ? 'index.js' : 'index.cjs'),
    },
    rollupOptions: {
      external: ['react', 'react-dom', 'react/jsx-runtime', 'react-dom/client'],
    },
  },
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.ts?(x)'],
    restoreMocks: true,
  },
});
