import { defineConfig, devices } from "@playwright/test";
import { SIM_SECRET } from "./tests/demo";

// The server under test: the debug build from scripts/build.sh, on its own port and a fresh
// SQLite file with the demo data, so a run never depends on (or disturbs) a developer's server.
const port = Number(process.env.E2E_PORT ?? 3100);
const baseURL = `http://127.0.0.1:${port}`;
// The demo Graph simulator, on a port of its own so specs can turn its knobs (run_control.spec.ts).
export const simPort = port + 1000;

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1, // 2 cores: the server, Chromium and the runner share them
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: [["list"]],
  use: {
    baseURL,
    trace: "retain-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        // Browsers cannot be downloaded here: use Debian's Chromium.
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
          ],
        },
      },
    },
  ],
  // A deployment's settings besides the demo's: a secret key file (a fresh key per run), so a
  // client secret can be entered in the app; the public URL, which invitation links need; and
  // the client secret the demo simulator accepts, so a tenant connected in the UI is served too.
  webServer: {
    command:
      `rm -rf ../target/e2e && mkdir -p ../target/e2e` +
      ` && ../target/debug/tenantatlas new-secret-key --id e2e > ../target/e2e/secret.keys` +
      ` && echo '${SIM_SECRET}' > ../target/e2e/graph-secret` +
      ` && ../target/debug/tenantatlas serve --demo --demo-graph-port ${simPort} --addr 127.0.0.1:${port}` +
      ` --site-root ../target/site --secret-key-file ../target/e2e/secret.keys` +
      ` --demo-graph-secret-file ../target/e2e/graph-secret --public-url ${baseURL}`,
    env: { DATABASE_URL: "sqlite://../target/e2e/e2e.db", RUST_LOG: "warn" },
    url: `${baseURL}/healthz`,
    reuseExistingServer: false,
    timeout: 60_000,
  },
});
