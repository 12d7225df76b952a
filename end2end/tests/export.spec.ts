import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { inflateRawSync } from "node:zlib";
import { CONTOSO, openHydrated, signIn } from "./demo";

/** The demo's backup set (src/server/seed.rs, DEMO_BASELINE_SET). */
const DEMO_SET = "Baseline (demo)";

/**
 * The entries of a ZIP archive by name, read the way unzip does: the end record, the central
 * directory, each local header, then the deflated data.
 */
function readZip(zip: Buffer): Map<string, string> {
  const end = zip.length - 22;
  expect(zip.readUInt32LE(end), "end of central directory record").toBe(0x06054b50);
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const files = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    expect(zip.readUInt32LE(at), "central directory entry").toBe(0x02014b50);
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const skip = nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString("utf8", at + 46, at + 46 + nameLength);
    expect(zip.readUInt32LE(local), `local header of ${name}`).toBe(0x04034b50);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    expect(method, `${name} is deflated`).toBe(8);
    const data = inflateRawSync(zip.subarray(start, start + compressed));
    expect(data.length, `${name} has its recorded size`).toBe(size);
    files.set(name, data.toString("utf8"));
    at += 46 + skip;
  }
  return files;
}

test("a member downloads the demo backup set as a ZIP whose manifest lists the set", async ({ page }) => {
  // Any member may export: readonly is the least role.
  await signIn(page, "readonly@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await page.getByRole("link", { name: DEMO_SET }).click();
  await expect(page.getByTestId("backup-set-name")).toHaveText(DEMO_SET);
  const itemCount = Number(await page.getByTestId("item-count").textContent());
  expect(itemCount).toBeGreaterThan(0);
  const policyNames = await page.getByTestId("backup-items").locator("tbody tr td:first-child").allTextContents();

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download (ZIP)" }).click(),
  ]);
  const setId = Number(new URL(page.url()).pathname.split("/").pop());
  expect(download.suggestedFilename()).toBe(`backup-set-${setId}.zip`);
  const files = readZip(readFileSync((await download.path())!));

  const manifest = JSON.parse(files.get("manifest.json")!);
  expect(manifest.format).toBe("tenantatlas.backup-set-export/1");
  expect(manifest.tenant).toEqual({ id: CONTOSO, name: "Contoso (demo)" });
  expect(manifest.backup_set.id).toBe(setId);
  expect(manifest.backup_set.name).toBe(DEMO_SET);
  expect(manifest.item_count).toBe(itemCount);
  expect(manifest.items).toHaveLength(itemCount);
  expect(policyNames).toHaveLength(itemCount);
  for (const item of manifest.items) {
    expect(item.content_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(item.file).toMatch(new RegExp(`^policies/${item.policy_type}/[^/]+__${item.graph_id}\\.json$`));
    // Each listed file is in the archive and holds the captured policy, under the name it had
    // when it was backed up (the set's page shows the inventory's name now: one of the demo's
    // policies was renamed since).
    const version = JSON.parse(files.get(item.file)!);
    expect(version.policyType).toBe(item.policy_type);
    expect(item.name).toBe(version.policy.displayName ?? version.policy.name);
  }
  expect(files.size).toBe(itemCount + 2);
  expect(files.get("README.md")).toContain(`# ${DEMO_SET}\n`);
});
