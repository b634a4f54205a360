import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The script-tag embed: one self-contained file with React inside, for shops without a build.
export default defineConfig({
  plugins: [react()],
  define: { 'process.env.NODE_ENV': JSON.stringify('production') },
  build: {
    outDir: 'dist',
    emptyOutDir: false,
    lib: {
      entry: 'src/embed.tsx',
      formats: ['iife'],
      name: 'RecsysLiteWidget',
      fileName: () => 'widget.js',
    },
  },
});
