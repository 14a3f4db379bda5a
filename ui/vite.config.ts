// The dashboard is served by every node at /ui/ (src/api/dashboard-routes.ts) from ui/dist.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', reportCompressedSize: true, assetsInlineLimit: 0 },
  logLevel: 'warn',
});
