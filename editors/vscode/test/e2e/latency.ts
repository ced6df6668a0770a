// Keystroke to ghost text in a real VS Code, for `coderag-daemon bench editors`: the packaged extension in
// code-server's workbench (headless Chromium) against the real daemon, one file of the sample project open
// and cached. Each trial moves to a line, writes what the trial starts from, waits until the daemon has it
// cached, types a few characters key by key and times from the last key (its keydown in the page) to the
// ghost text in the editor's DOM. The plan (file, trials, timeout) comes from $CODERAG_LATENCY_PLAN; each
// trial goes to $CODERAG_LATENCY_OUT as a JSON line. Run with `npm run bench:latency`; the daemon's model is
// $CODERAG_E2E_MODEL's, as in the end-to-end test.
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PYTHON } from '../daemon/daemonProcess';
import { modelArgs } from './daemonCommand';
import { askDaemon, EXTENSION_DIR, runFolder, SLOW, TappedMessage, tappedMessages, until, Workbench } from './workbench';

interface Scenario {
  name: string;
  /** 'mid-line', 'after-def' or 'new-line'. */
  kind: string;
  /** 0-based. */
  line: number;
  column: number;
  /** Deleted at the cursor, then `insert` written there, before the timed typing. */
  remove: string;
  insert: string;
  typed: string;
}

interface Plan {
  file: string;
  scenarios: Scenario[];
  timeoutMs: number;
  keyDelayMs: number;
}

interface Shown {
  /** Date.now() of the last keydown, and of the first ghost text in the DOM after it. */
  key: number;
  at: number;
  text: string;
  /** Lines below the cursor's line are drawn (a block). */
  below: boolean;
}

/** Put in the page once: the time of every keydown, and each change of the active editor's ghost text,
 * seen by a MutationObserver (before the frame that paints it). */
const RECORDER = `(() => {
  if (window.__latency) { return; }
  const state = { keys: [], changes: [] };
  const ghost = () => {
    const editor = document.querySelector('.editor-group-container.active .monaco-editor');
    if (!editor) { return { text: '', below: false }; }
    const first = [...editor.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview')]
      .map((e) => e.textContent).join('');
    const below = [...editor.querySelectorAll('.ghost-text')].map((e) => e.textContent).join('\\n');
    return { text: below.trim() ? first + '\\n' + below : first, below: below.trim() !== '' };
  };
  let last = ghost();
  document.addEventListener('keydown', () => state.keys.push(Date.now()), true);
  new MutationObserver(() => {
    const now = ghost();
    if (now.text !== last.text) {
      last = now;
      state.changes.push({ at: Date.now(), ...now });
    }
  }).observe(document.querySelector('.monaco-workbench'), { childList: true, subtree: true, characterData: true });
  window.__latency = {
    reset: () => { state.keys = []; state.changes = [{ at: Date.now(), ...last }]; },
    // The first ghost text after the last key; one already shown that the key left in place counts at once.
    shown: () => {
      const key = state.keys.at(-1);
      if (key === undefined) { return null; }
      const before = state.changes.filter((c) => c.at < key).at(-1);
      const after = state.changes.filter((c) => c.at >= key);
      const change = after.find((c) => c.text.trim() !== '');
      if (change) { return { key, ...change }; }
      return after.length === 0 && before && before.text.trim() !== '' ? { key, ...before, at: key } : null;
    },
  };
})()`;

const TAP = path.join(__dirname, 'lspTap.js');
/** Longer than the daemon's preload delay (400 ms by default). */
const QUIET_MS = 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The whole sample project, as a user has it (the end-to-end test's copy is cut for the tiny model). */
function sampleProject(): string {
  const root = path.join(mkdtempSync(path.join(tmpdir(), 'coderag-latency-')), 'tasktrack');
  cpSync(path.join(EXTENSION_DIR, '..', '..', 'fixtures', 'sample_project'), root, {
    recursive: true,
    filter: (source) => !['QUESTIONS.json', '__pycache__'].includes(path.basename(source)),
  });
  return root;
}

/** Until the daemon holds every open file in its cache (at the start). */
async function cached(tap: string): Promise<void> {
  await until(async () => {
    const context = await askDaemon<{ files: { cached: boolean }[] }>(tap, 'coderag/context', {})
      .catch(() => ({ files: [] })); // the daemon is not there yet, or has no model yet
    return context.files.length > 0 && context.files.every((file) => file.cached) ? true : undefined;
  }, 'the daemon to cache the open file', 5 * SLOW, 1000);
}

/** Until the daemon has answered every request and stayed ready for a while (longer than its preload delay):
 * it holds the text as it is now. A completion leaves its prompt in the cache after the cursor, so the file
 * counts as cached only up to there until the next edit; what the next keystroke needs is there. */
async function idle(tap: string): Promise<void> {
  await sleep(300); // the editor's last changes reach the daemon first
  await until(() => {
    const messages = tappedMessages(tap);
    const status = messages.filter((m) => m.body.method === 'coderag/status').at(-1);
    const answered = new Set(messages.filter((m) => m.direction === 'toEditor' && m.body.method === undefined)
      .map((m) => m.body.id));
    const pending = messages.some((m) => m.direction === 'toDaemon' && m.body.method !== undefined
      && m.body.id !== undefined && !answered.has(m.body.id));
    const quiet = status !== undefined && (status.body.params as { state: string }).state === 'ready'
      && Date.now() - status.time > QUIET_MS;
    return quiet && !pending ? true : undefined;
  }, 'the daemon to be ready and idle', 5 * SLOW, 100);
}

/** The daemon's inline completion requests and their replies since `since`. */
function completions(tap: string, since: number): { asked: TappedMessage; answer?: TappedMessage }[] {
  const messages = tappedMessages(tap);
  return messages.filter((m) => m.direction === 'toDaemon' && m.body.method === 'textDocument/inlineCompletion'
    && m.time >= since).map((asked) => ({
    asked,
    answer: messages.find((m) => m.direction === 'toEditor' && m.body.method === undefined && m.body.id === asked.body.id
      && m.time >= asked.time),
  }));
}

/** Where a trial's typing starts in the file's text. */
function startOffset(original: string, scenario: Scenario): number {
  const lines = original.split('\n');
  return lines.slice(0, scenario.line).reduce((sum, line) => sum + line.length + 1, 0) + scenario.column
    + scenario.insert.length;
}

/** The text a trial starts from: `original` with the scenario's `remove` replaced by its `insert`. */
function startText(original: string, scenario: Scenario): string {
  const offset = startOffset(original, scenario) - scenario.insert.length;
  return original.slice(0, offset) + scenario.insert + original.slice(offset + scenario.remove.length);
}

async function runTrial(workbench: Workbench, tap: string, plan: Plan, scenario: Scenario, uri: string,
  original: string): Promise<Record<string, unknown>> {
  const setupAt = Date.now();
  const start = startText(original, scenario);
  const page = workbench.page;
  await page.keyboard.press('Control+G');
  await page.keyboard.type(`${scenario.line + 1}:${scenario.column + 1}`);
  await page.keyboard.press('Enter');
  for (let i = 0; i < scenario.remove.length; i++) {
    await page.keyboard.press('Shift+ArrowRight');
  }
  if (scenario.remove !== '') {
    await page.keyboard.press('Delete');
  }
  if (scenario.insert !== '') {
    await page.keyboard.insertText(scenario.insert);
  }
  let text = '';
  await until(async () => {
    text = (await askDaemon<{ text: string }>(tap, 'coderag/documentText', { uri })).text;
    return text === start || undefined;
  }, () => `${scenario.name}: the daemon's copy to be the trial's start (it is:\n${text})`, 10_000, 100);
  await idle(tap);
  await page.keyboard.press('Escape');
  await sleep(200);
  await page.evaluate('window.__latency.reset()');
  for (const [index, char] of [...scenario.typed].entries()) {
    if (index > 0) {
      await sleep(plan.keyDelayMs);
    }
    await page.keyboard.type(char);
  }
  const shown = await until(async () => (await page.evaluate('window.__latency.shown()')) as Shown | null ?? undefined,
    'ghost text', plan.timeoutMs, 20).catch(() => undefined);
  const asked = completions(tap, setupAt);
  // The suggestion drawn: the last answer that came before it (an earlier one, when the key typed through it).
  const drawn = shown === undefined ? asked.at(-1) : asked.filter((c) => c.answer && c.answer.time <= shown.at).at(-1);
  const item = (drawn?.answer?.body.result as { items?: { insertText: string }[] } | null | undefined)?.items?.[0];
  // The cursor's line after the typing (VS Code may have closed a quote or bracket after the cursor).
  const from = startOffset(original, scenario);
  const cursor = from + scenario.typed.length;
  let typed = '';
  await until(async () => {
    typed = (await askDaemon<{ text: string }>(tap, 'coderag/documentText', { uri })).text;
    return typed.slice(from, cursor) === scenario.typed || undefined; // the last key's change has come
  }, () => `the daemon's copy to have the typing (it is:\n${typed})`, 10_000, 50);
  const lineStart = typed.lastIndexOf('\n', cursor - 1) + 1;
  const lineEnd = typed.indexOf('\n', cursor) < 0 ? typed.length : typed.indexOf('\n', cursor);
  const status = tappedMessages(tap).filter((m) => m.body.method === 'coderag/status').at(-1)?.body.params as
    { lastRequest?: unknown } | undefined;
  const insertText = item?.insertText ?? '';
  return {
    scenario: scenario.name,
    kind: scenario.kind,
    typed: scenario.typed,
    latencyMs: shown === undefined ? null : shown.at - shown.key,
    lines: insertText.trimEnd().split('\n').length,
    blockDrawn: shown?.below ?? false,
    suggestion: insertText,
    lineBefore: typed.slice(lineStart, cursor),
    textAfter: typed.slice(cursor, lineEnd),
    requests: completions(tap, shown?.key ?? Date.now()).length,
    typedThrough: shown !== undefined && drawn !== undefined && drawn.asked.time < shown.key,
    askedMs: shown && drawn ? drawn.asked.time - shown.key : null,
    answeredMs: shown && drawn?.answer ? drawn.answer.time - shown.key : null,
    daemon: status?.lastRequest ?? null,
  };
}

/** Undoes the trial's edits: until the editor's text is the file's again. */
async function restore(workbench: Workbench): Promise<void> {
  const page = workbench.page;
  await page.keyboard.press('Escape');
  for (let i = 0; i < 40 && await page.locator('.tab.active.dirty').count() > 0; i++) {
    await page.keyboard.press('Control+Z');
    await sleep(50);
  }
  if (await page.locator('.tab.active.dirty').count() > 0) {
    throw new Error('undo did not bring the file back');
  }
  await page.keyboard.press('Escape');
}

async function main(): Promise<void> {
  const plan = JSON.parse(readFileSync(process.env.CODERAG_LATENCY_PLAN ?? '', 'utf8')) as Plan;
  const out = process.env.CODERAG_LATENCY_OUT ?? '';
  const workspace = sampleProject();
  const tap = runFolder('latency-tap');
  const command = [process.execPath, TAP, tap, '--', PYTHON, '-m', 'coderag_daemon', ...modelArgs(),
    '--log-level', 'INFO'];
  // The text a trial writes before its typing goes in as it is, as in the other editor (VS Code indents the lines
  // of text typed or pasted in); no trial types Enter.
  const settings = { 'coderag.daemon.command': command, 'editor.autoIndent': 'none' };
  const workbench = await Workbench.open({ name: 'latency', workspace, settings });
  try {
    await workbench.openFromExplorer(plan.file);
    await workbench.clickIntoEditor(); // once: the keyboard stays in the editor (later, sticky scroll covers the spot)
    await cached(tap);
    await idle(tap);
    await workbench.page.evaluate(RECORDER);
    const uri = pathToFileURL(path.join(workspace, plan.file)).href;
    const original = readFileSync(path.join(workspace, plan.file), 'utf8');
    for (const [index, scenario] of plan.scenarios.entries()) {
      const trial = await runTrial(workbench, tap, plan, scenario, uri, original);
      appendFileSync(out, JSON.stringify({ trial: index, ...trial }) + '\n');
      const ms = trial.latencyMs === null ? 'none' : `${trial.latencyMs} ms`;
      process.stderr.write(`vscode ${index + 1}/${plan.scenarios.length} ${scenario.name}: ${ms}, ` +
        `${trial.lines} line(s) ${JSON.stringify(trial.suggestion)}\n`);
      await restore(workbench);
      await idle(tap);
    }
  } catch (error) {
    await workbench.screenshot('latency-failed').catch(() => undefined);
    throw error;
  } finally {
    await workbench.close();
    rmSync(path.dirname(workspace), { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
