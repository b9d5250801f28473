// Drives Debian's headless Chromium through the Kairos console, as two approvers would:
// alice signs in with her API token, bob through the identity provider (single sign-on).
// Run by crates/kairos/tests/browser.rs, which starts the real server and a real OpenID
// Connect provider, seeds a pending request and checks afterwards that the waiting
// workload got its credential.
//
// Environment: KAIROS_ADDR, ALICE_TOKEN, BOB_LOGIN (bob's login at the IdP), ADMIN_TOKEN,
// REQUEST_ID, OUT_DIR (screenshots), CHROMIUM (default /usr/bin/chromium). Exits non-zero
// with a message on any failure.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("KAIROS_ADDR");
const request = env("REQUEST_ID");
const out = env("OUT_DIR");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

/// axe-core on a page, in a context that may inject it (the console's CSP allows no script,
/// which is the point; only this checker's context bypasses it), with the same session.
async function accessibility(context, path) {
  const state = await context.storageState();
  const checker = await browser.newContext({ bypassCSP: true, storageState: state });
  const page = await checker.newPage();
  await page.goto(base + path);
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => await globalThis.axe.run());
  await checker.close();
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `${path}: ${bad.map((v) => `${v.id} (${v.impact}): ${v.help}`).join("; ")}`);
}

async function signIn(token, name) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(base + "/ui/inbox");
  check(page.url().endsWith("/ui/login"), `${name}: not sent to sign-in, at ${page.url()}`);
  await accessibility(context, "/ui/login");
  await page.screenshot({ path: `${out}/login.png`, fullPage: true });
  await page.fill("#token", token);
  await Promise.all([page.waitForURL("**/ui/inbox"), page.click("button[type=submit]")]);
  return { context, page };
}

/// Single sign-on: the "Sign in with …" button, the IdP's own login form, back to the inbox.
async function signInWithIdp(login) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(base + "/ui/inbox");
  check(page.url().endsWith("/ui/login"), `${login}: not sent to sign-in, at ${page.url()}`);
  const button = page.locator('a[href="/ui/sso/start"]');
  check((await button.textContent()).includes("Sign in with Test IdP"), "no single sign-on button");
  await page.screenshot({ path: `${out}/login-sso.png`, fullPage: true });
  await button.click();
  await page.waitForSelector('input[name="login"]');
  check(!page.url().startsWith(base), `the button did not lead to the IdP: ${page.url()}`);
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', "any password");
  await Promise.all([page.waitForURL(`${base}/ui/inbox`), page.click('button[type="submit"]')]);
  return { context, page };
}

async function approve(page, reason) {
  const input = page.locator(`#approve-${request}`);
  await input.fill(reason);
  await Promise.all([
    page.waitForURL(`**/ui/requests/${request}`),
    page.locator(`form[action="/ui/requests/${request}/approve"] button`).click(),
  ]);
}

try {
  // Alice: sees the request in her inbox, and a form without its CSRF token is refused.
  const alice = await signIn(env("ALICE_TOKEN"), "alice");
  const inbox = await alice.page.content();
  check(inbox.includes(request), "alice's inbox does not show the request");
  await alice.page.screenshot({ path: `${out}/inbox.png`, fullPage: true });
  await accessibility(alice.context, "/ui/inbox");
  const forged = await alice.context.request.post(`${base}/ui/requests/${request}/approve`, {
    form: { reason: "no token" },
    maxRedirects: 0,
  });
  check(forged.status() === 403, `a form without its CSRF token got ${forged.status()}`);
  await approve(alice.page, "reviewed in the browser");
  const after = await alice.page.content();
  check(after.includes("reviewed in the browser"), "the request page does not show alice's approval");
  await alice.page.screenshot({ path: `${out}/request.png`, fullPage: true });
  await accessibility(alice.context, `/ui/requests/${request}`);
  for (const [path, name] of [["/ui/requests", "requests"], ["/ui/grants?state=all", "grants"], ["/ui/identities", "identities"]]) {
    await alice.page.goto(base + path);
    await alice.page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
    await accessibility(alice.context, path);
  }

  // Bob signs in through the IdP, sees the request and gives the second approval: the
  // grant is issued.
  const bob = await signInWithIdp(env("BOB_LOGIN"));
  const bobInbox = await bob.page.content();
  check(bobInbox.includes(request), "bob's inbox (single sign-on) does not show the request");
  check(bobInbox.includes("bob (approver)"), "bob is not the one signed in");
  await accessibility(bob.context, "/ui/inbox");
  await approve(bob.page, "second pair of eyes");
  const granted = await bob.page.content();
  check(granted.includes("granted"), "the request is not granted after the second approval");
  const grantLink = bob.page.locator('a[href^="/ui/grants/grt_"]').first();
  await Promise.all([bob.page.waitForURL("**/ui/grants/grt_*"), grantLink.click()]);
  await bob.page.screenshot({ path: `${out}/grant.png`, fullPage: true });
  const grantPath = new URL(bob.page.url()).pathname;
  await accessibility(bob.context, grantPath);
  // An admin (who reads the audit log) searches and exports it.
  const admin = await signIn(env("ADMIN_TOKEN"), "admin");
  await admin.page.goto(`${base}/ui/audit?request=${request}`);
  const audit = await admin.page.content();
  check(audit.includes("user:alice") && audit.includes("user:bob"), "the audit search does not show both approvals");
  await admin.page.screenshot({ path: `${out}/audit.png`, fullPage: true });
  await accessibility(admin.context, `/ui/audit?request=${request}`);
  const csv = await admin.context.request.get(`${base}/ui/audit/export?format=csv&request=${request}`);
  check(csv.status() === 200, `CSV export got ${csv.status()}`);
  check((await csv.text()).startsWith("seq,at,kind,actor,"), "the CSV export has no header");
  await admin.page.goto(`${base}/ui/audit/verify`);
  check((await admin.page.content()).includes("link and hash correctly"), "the chain is not reported intact");
  await accessibility(admin.context, "/ui/audit/verify");
  // The governance pages (and the grant page with its revoke form), as an admin sees them.
  for (const [path, name] of [
    [grantPath, "grant-admin"],
    ["/ui/alerts?state=all", "alerts"],
    ["/ui/reviews", "reviews"],
    ["/ui/recertifications", "recertifications"],
    ["/ui/exceptions", "exceptions"],
    ["/ui/posture", "posture"],
    ["/ui/notifications", "notifications"],
  ]) {
    await admin.page.goto(base + path);
    await admin.page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
    await accessibility(admin.context, path);
  }
  console.log("console browser checks passed");
} finally {
  await browser.close();
}
