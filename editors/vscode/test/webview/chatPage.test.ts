// The chat panel's page in headless Chromium, as VS Code would host it: the HTML the panel makes, the
// bundled page script, and a stubbed acquireVsCodeApi that records what the page sends.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { Browser, chromium, Page } from 'playwright-core';
import { FromPage, ShownSource, ToPage } from '../../src/chatMessages';
import { chatPageHtml } from '../../src/chatPage';

const EXTENSION_DIR = path.resolve(__dirname, '../../..');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let server: Server;
let origin: string;
let browser: Browser;
let page: Page;

before(async () => {
  server = createServer((request, response) => {
    const dist = (name: string) => readFileSync(path.join(EXTENSION_DIR, 'dist', name));
    const routes: Record<string, [string, () => string | Buffer]> = {
      '/': ['text/html', () => chatPageHtml({ cspSource: origin, scriptUri: `${origin}/webview.js`, styleUri: `${origin}/webview.css` })],
      '/webview.js': ['text/javascript', () => dist('webview.js')],
      '/webview.css': ['text/css', () => dist('webview.css')],
    };
    const route = routes[request.url ?? ''];
    response.writeHead(route ? 200 : 404, { 'content-type': route?.[0] ?? 'text/plain' }).end(route?.[1]() ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM });
});

after(async () => {
  await browser?.close();
  server?.close();
});

beforeEach(async () => {
  await page?.close();
  page = await browser.newPage();
  await page.addInitScript(() => {
    const sent: unknown[] = [];
    Object.assign(window, { sent, acquireVsCodeApi: () => ({ postMessage: (message: unknown) => sent.push(message) }) });
  });
  await page.goto(origin);
  await waitForSent({ type: 'ready' });
});

/** A message from the extension, as VS Code delivers it. */
async function post(message: ToPage): Promise<void> {
  await page.evaluate((data) => window.postMessage(data, '*'), message);
}

async function sent(): Promise<FromPage[]> {
  return page.evaluate(() => (window as unknown as { sent: FromPage[] }).sent);
}

async function waitForSent(message: FromPage): Promise<void> {
  await page.waitForFunction((expected) => (window as unknown as { sent: unknown[] }).sent
    .some((m) => JSON.stringify(m) === JSON.stringify(expected)), message);
}

test('streamed pieces render as Markdown with code blocks', async () => {
  await post({ type: 'started', question: 'How do I check a token?' });
  await post({ type: 'delta', text: 'Call **`verify_token`**:\n\n```py' });
  await post({ type: 'delta', text: 'thon\nclaims = verify_token(raw)\n```\n' });
  const code = page.locator('.answer pre code.language-python');
  await code.waitFor();
  assert.equal(await code.textContent(), 'claims = verify_token(raw)\n');
  assert.equal(await page.locator('.answer strong code').textContent(), 'verify_token');
  assert.equal(await page.locator('.question').textContent(), 'How do I check a token?');
  await post({ type: 'finished', exchange: { question: 'How do I check a token?', answer: 'Call **`verify_token`**.', note: '9 tokens in 400 ms', failed: false, sources: [] } });
  await page.locator('.note', { hasText: '9 tokens in 400 ms' }).waitFor();
  assert.equal(await page.locator('.answer').textContent(), 'Call verify_token.\n');
});

test('the stop button shows while an answer runs and sends stop; Escape does too', async () => {
  const stop = page.locator('#stop');
  assert.equal(await stop.isVisible(), false);
  await post({ type: 'started', question: 'Explain everything' });
  await stop.waitFor({ state: 'visible' });
  assert.equal(await page.locator('#send').isDisabled(), true);
  await stop.click();
  await waitForSent({ type: 'stop' });
  await page.keyboard.press('Escape');
  assert.equal((await sent()).filter((m) => m.type === 'stop').length, 2);
  await post({ type: 'finished', exchange: { question: 'Explain everything', answer: 'Half', note: 'Stopped.', failed: false, sources: [] } });
  await stop.waitFor({ state: 'hidden' });
  assert.equal(await page.locator('#send').isDisabled(), false);
});

test('Enter asks the question, Shift+Enter starts a new line, an empty question is not sent', async () => {
  const question = page.locator('#question');
  await question.press('Enter');
  await question.pressSequentially('Where is');
  await question.press('Shift+Enter');
  await question.pressSequentially('the config read?');
  await question.press('Enter');
  await waitForSent({ type: 'ask', question: 'Where is\nthe config read?' });
  assert.deepEqual((await sent()).filter((m) => m.type === 'ask').length, 1);
  assert.equal(await question.inputValue(), '');
});

test('model output with HTML or script shows as text and runs nothing', async () => {
  const hostile = '<script>window.pwned = 1</script>\n\n<img src=x onerror="window.pwned = 2">' +
    '<b onmouseover="window.pwned = 3">bold?</b> [link](javascript:window.pwned=4) <iframe src="https://example.com"></iframe>';
  await post({ type: 'started', question: '<img src=x onerror="window.pwned = 5">' });
  await post({ type: 'delta', text: hostile });
  await page.locator('.answer p').first().waitFor();
  await post({ type: 'finished', exchange: { question: '<img src=x onerror="window.pwned = 5">', answer: hostile, note: '<b>done</b>', failed: false, sources: [] } });
  await page.locator('.note', { hasText: '<b>done</b>' }).waitFor();
  const answer = page.locator('.answer');
  assert.equal(await answer.locator('script, img, b, iframe').count(), 0, 'no element came from the model\'s tags');
  // Only the plain https address in the text became a link; the javascript: one stayed text.
  assert.deepEqual(await answer.locator('a').evaluateAll((links) => links.map((a) => a.getAttribute('href'))), ['https://example.com']);
  assert.match((await answer.textContent()) ?? '', /<script>window\.pwned = 1<\/script>/);
  assert.match((await answer.textContent()) ?? '', /\[link\]\(javascript:window\.pwned=4\)/);
  assert.equal(await page.locator('.question').textContent(), '<img src=x onerror="window.pwned = 5">');
  await page.locator('.answer p').first().hover();
  assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
});

test('a safe link stays a link', async () => {
  await post({ type: 'conversation', exchanges: [
    { question: 'Docs?', answer: 'See [the docs](https://example.com/docs).', note: '', failed: false, sources: [] },
  ] });
  const link = page.locator('.answer a');
  await link.waitFor();
  assert.equal(await link.getAttribute('href'), 'https://example.com/docs');
});

test('a restored conversation replaces what was shown; a failure is marked', async () => {
  await post({ type: 'started', question: 'old' });
  await post({ type: 'conversation', exchanges: [
    { question: 'one', answer: '*first*', note: '3 tokens in 50 ms', failed: false, sources: [] },
    { question: 'two', answer: '', note: 'The CodeRAG daemon is not running.', failed: true, sources: [] },
  ] });
  await page.locator('.note.failed').waitFor();
  assert.deepEqual(await page.locator('.question').allTextContents(), ['one', 'two']);
  assert.equal(await page.locator('.answer em').textContent(), 'first');
});

test('the attached selection shows until it is sent or dropped', async () => {
  const attachment = page.locator('#attachment');
  assert.equal(await attachment.isVisible(), false);
  await post({ type: 'attachment', label: 'tasktrack/auth.py:10-13' });
  await attachment.waitFor({ state: 'visible' });
  assert.equal(await page.locator('#attachment-label').textContent(), 'tasktrack/auth.py:10-13');
  await page.locator('#detach').click();
  await waitForSent({ type: 'detach' });
  await post({ type: 'attachment', label: undefined });
  await attachment.waitFor({ state: 'hidden' });
  await page.locator('#new').click();
  await waitForSent({ type: 'newConversation' });
});

const auth: ShownSource = {
  uri: 'file:///home/me/tasktrack/tasktrack/auth.py', path: 'tasktrack/auth.py', label: 'tasktrack/auth.py:96-131',
  title: 'def verify_token', first: 96, last: 131,
};
const config: ShownSource = {
  uri: 'file:///home/me/tasktrack/tasktrack/config.py', path: 'tasktrack/config.py', label: 'tasktrack/config.py:7',
  title: 'SECRET_KEY', first: 7, last: 7,
};

test('an answer\'s sources are listed as links; a click asks the extension to open that one', async () => {
  await post({ type: 'started', question: 'Where is the expiry checked?' });
  await post({ type: 'delta', text: 'In verify_token.' });
  assert.equal(await page.locator('.sources').isVisible(), false, 'no sources while streaming');
  await post({ type: 'finished', exchange: { question: 'Where is the expiry checked?', answer: 'In verify_token.', note: '', failed: false,
    sources: [auth, config] } });
  const links = page.locator('.sources li .source-link');
  await links.first().waitFor();
  assert.equal(await page.locator('.sources-heading').textContent(), 'Sources');
  assert.deepEqual(await page.locator('.sources li').allTextContents(), ['tasktrack/auth.py:96-131 def verify_token', 'tasktrack/config.py:7 SECRET_KEY']);
  await links.nth(1).click();
  await waitForSent({ type: 'openSource', uri: config.uri, label: config.label });
  await links.nth(0).focus();
  await page.keyboard.press('Enter');
  await waitForSent({ type: 'openSource', uri: auth.uri, label: auth.label });
  assert.equal((await sent()).filter((m) => m.type === 'openSource').length, 2);
});

test('citations of a source in the answer become links to it; others stay text', async () => {
  const answer = 'Checked in tasktrack/auth.py:96-131 (see `tasktrack/auth.py:100` too), keyed by tasktrack/config.py:7.\n\n' +
    'Not a source: tasktrack/models.py:3, tasktrack/auth.py:200, xtasktrack/auth.py:96-131, tasktrack/config.py:70.\n\n' +
    '```\ntasktrack/auth.py:96-131\n```\n';
  await post({ type: 'conversation', exchanges: [{ question: 'q', answer, note: '', failed: false, sources: [auth, config] }] });
  const cited = page.locator('.answer .source-link');
  await cited.first().waitFor();
  assert.deepEqual(await cited.allTextContents(), ['tasktrack/auth.py:96-131', 'tasktrack/auth.py:100', 'tasktrack/config.py:7']);
  assert.equal(await page.locator('.answer code .source-link').count(), 1, 'inside inline code too');
  assert.equal(await page.locator('.answer pre .source-link').count(), 0, 'not in code blocks');
  assert.equal((await page.locator('.answer p').first().textContent()),
    'Checked in tasktrack/auth.py:96-131 (see tasktrack/auth.py:100 too), keyed by tasktrack/config.py:7.', 'the text reads as before');
  await cited.nth(1).click();
  await waitForSent({ type: 'openSource', uri: auth.uri, label: auth.label });
});

test('a source\'s title, label and path show as text and run nothing', async () => {
  const hostile: ShownSource = {
    uri: 'file:///p/x.py', path: '<img src=x onerror="window.pwned = 1">', label: '<img src=x onerror="window.pwned = 1">:1',
    title: '<img src=x onerror="window.pwned = 3"><script>window.pwned = 4</script>', first: 1, last: 1,
  };
  const answer = 'See <img src=x onerror="window.pwned = 1">:1 and [x](javascript:window.pwned=5).';
  await post({ type: 'conversation', exchanges: [{ question: 'q', answer, note: '', failed: false, sources: [hostile] }] });
  await page.locator('.sources .source-link').waitFor();
  assert.equal(await page.locator('img, script:not([nonce])').count(), 0, 'no element came from the source or the answer');
  assert.equal(await page.locator('.sources .source-link').textContent(), hostile.label);
  assert.equal(await page.locator('.sources .source-title').textContent(), hostile.title);
  assert.equal(await page.locator('.answer .source-link').textContent(), hostile.label, 'the citation is a link, as text');
  await page.locator('.sources .source-link').click();
  await waitForSent({ type: 'openSource', uri: hostile.uri, label: hostile.label });
  assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
});
