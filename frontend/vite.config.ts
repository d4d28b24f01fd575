import { defineConfig } from 'vite';

// No @vitejs/plugin-react: esbuild compiles JSX with the automatic runtime,
// which is all this app needs (no fast refresh in dev).
export default defineConfig({
  esbuild: { jsx: 'automatic' },
  build: { outDir: 'dist', sourcemap: false },
  server: {
    // `npm run dev` proxies the API to a local `booking serve`.
    proxy: { '/api': 'http://127.0.0.1:3000' },
  },
  test: { environment: 'node', include: ['src/**/*.test.ts'] },
});
