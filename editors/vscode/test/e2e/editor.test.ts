// The packaged extension in a real VS Code (code-server's workbench in Chromium, its extension host on
// Node) against the real daemon, driven as a person does: the status bar, ghost text accepted with
// Tab (the daemon's copy of the file checked against the editor's), the chat panel with Stop and a
// source link, Find in Project by Meaning, and a daemon killed from outside.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { sampleWorkspace } from '../daemon/daemonProcess';
import { daemonPids, modelArgs, tappedDaemon } from './daemonCommand';
import { askDaemon, runFolder, SLOW, TappedMessage, tappedMessages, until, Workbench } from './workbench';

let workbench: Workbench;
let workspace: string;
let tap: string;

before(async () => {
  workspace = sampleWorkspace();
  tap = runFolder('editor-tap');
  const settings = { 'coderag.daemon.command': tappedDaemon(tap) };
  workbench = await Workbench.open({ name: 'editor', workspace, settings });
});

after(async () => {
  await workbench?.close();
});

/** A test body that leaves a screenshot of the workbench when it fails. */
function shot(name: string, body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body();
    } catch (error) {
      await workbench?.screenshot(`failed-${name}`).catch(() => undefined);
      throw error;
    }
  };
}

interface Suggestion {
  /** When the daemon answered. */
  time: number;
  insertText: string;
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
}

/** The reply to `request` (a restarted daemon counts its ids from 0 again: the first one after it). */
function replyTo(messages: TappedMessage[], request: TappedMessage | undefined): TappedMessage | undefined {
  return request === undefined ? undefined : messages.slice(messages.indexOf(request))
    .find((m) => m.direction === 'toEditor' && m.body.method === undefined && m.body.id === request.body.id);
}

/** The daemon's answer to the last inline completion request the editor made, if it came and was not empty. */
function lastSuggestion(): Suggestion | undefined {
  const messages = tappedMessages(tap);
  const asked = (m: TappedMessage) => m.direction === 'toDaemon' && m.body.method === 'textDocument/inlineCompletion';
  const request = messages.filter(asked).at(-1);
  const response = replyTo(messages, request);
  const item = (response?.body.result as { items?: Omit<Suggestion, 'time'>[] } | null | undefined)?.items?.[0];
  return item === undefined ? undefined : { ...item, time: response!.time };
}

/** Text as compared between the daemon's answer and the rendered ghost text: VS Code shows control
 * characters as their Unicode pictures, and spaces and line breaks as it lays the lines out. */
function comparable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)))
    .replace(/\u007f/g, '\u2421')
    .replace(/\s/g, '');
}

/** Waits for ghost text that shows the daemon's last suggestion (one answered after `since`). */
async function ghostOfDaemon(since: number): Promise<Suggestion> {
  let seen = '';
  let suggested: Suggestion | undefined;
  return until(async () => {
    seen = await workbench.ghostTextShown();
    suggested = lastSuggestion();
    if (suggested === undefined || suggested.time < since) {
      return undefined;
    }
    return comparable(seen) !== '' && comparable(seen) === comparable(suggested.insertText) ? suggested : undefined;
  }, () => `ghost text showing the daemon's suggestion (shown: ${JSON.stringify(seen)}, ` +
    `last suggestion: ${JSON.stringify(suggested)}, since ${since})`);
}

function offset(text: string, position: { line: number; character: number }): number {
  const lines = text.split('\n');
  return lines.slice(0, position.line).reduce((sum, line) => sum + line.length + 1, 0) + position.character;
}

const fileUri = (relative: string) => pathToFileURL(path.join(workspace, relative)).href;
const daemonText = async (relative: string) =>
  (await askDaemon<{ text: string }>(tap, 'coderag/documentText', { uri: fileUri(relative) })).text;

/** Types `lines` on new lines at the end of the active editor, as a person does (with VS Code's auto-indent). */
async function typeAtEnd(lines: string[]): Promise<void> {
  await workbench.clickIntoEditor();
  await workbench.page.keyboard.press('Control+End');
  for (const line of lines) {
    await workbench.page.keyboard.press('Enter');
    await workbench.page.keyboard.type(line);
  }
  await workbench.page.keyboard.press('Enter');
}

/** Saves the active editor and waits until it is no longer dirty. */
async function save(): Promise<void> {
  await workbench.page.keyboard.press('Control+S');
  await workbench.page.locator('.tab.active.dirty').waitFor({ state: 'detached' });
}

/** Where the cursor ends after `suggestion` is inserted, as the status bar says it ("Ln 3, Col 7"). */
function cursorAfter(suggestion: Suggestion): string {
  const lines = suggestion.insertText.split('\n');
  const line = suggestion.range.start.line + lines.length;
  const column = (lines.length === 1 ? suggestion.range.start.character : 0) + lines.at(-1)!.length + 1;
  return `Ln ${line}, Col ${column}`;
}

async function cursor(): Promise<string> {
  return workbench.page.locator('.statusbar-item[id="status.editor.selection"]').innerText();
}

/** Tab accepts the ghost text (a second Tab takes the rest when the first one took only the indentation
 * it starts with, as VS Code does); the file saved is the text before with the suggestion at its range,
 * and the daemon's copy (kept by incremental sync) is the same text. */
async function acceptAndCompare(relative: string, suggestion: Suggestion): Promise<void> {
  const before = await daemonText(relative);
  const end = cursorAfter(suggestion);
  for (let tab = 0; tab < 2 && await cursor() !== end; tab++) {
    await workbench.page.keyboard.press('Tab');
    await until(async () => await cursor() === end || undefined, `the cursor at ${end}`, 10_000).catch(() => undefined);
  }
  assert.equal(await cursor(), end, 'the cursor is after the suggestion');
  await save();
  const saved = readFileSync(path.join(workspace, relative), 'utf8');
  const expected = before.slice(0, offset(before, suggestion.range.start)) + suggestion.insertText +
    before.slice(offset(before, suggestion.range.end));
  assert.equal(saved, expected, 'Tab inserted the suggestion at the cursor');
  const copy = await until(async () => {
    const text = await daemonText(relative);
    return text === saved ? text : undefined;
  }, 'the daemon\'s copy to equal the saved file', 30_000).catch(async () => daemonText(relative));
  assert.equal(copy, saved, 'the daemon\'s copy of the file is the editor\'s');
}

test('with only the daemon command set, the extension starts the daemon and its status bar item reaches ready',
  shot('ready', async () => {
    await workbench.waitForStatus(/^CodeRAG [\d.]+k?\/[\d.]+k$/);
    const label = await workbench.statusLabel();
    assert.match(label, /CodeRAG daemon: ready/);
    const model = modelArgs();
    if (model.length > 0) {
      assert.ok(label.includes(`Model: ${model[1]}`), `the --model flag of the command applies: ${label}`);
    }
    const initialize = tappedMessages(tap).find((m) => m.body.method === 'initialize')!;
    assert.deepEqual((initialize.body.params as { initializationOptions: unknown }).initializationOptions, {},
      'no setting overrides the flags of the daemon command');
    assert.deepEqual(await workbench.toasts(), []);
  }));

test('typing shows the daemon\'s suggestion as ghost text; Tab inserts it; the daemon\'s copy is the editor\'s text',
  shot('ghost-text', async () => {
    await workbench.openFromExplorer('tasktrack/auth.py');
    const typed = Date.now();
    await typeAtEnd(['', 'def check_token(raw):']);
    const suggestion = await ghostOfDaemon(typed);
    assert.ok(suggestion.insertText.trim() !== '');
    await workbench.screenshot('ghost-text');
    await acceptAndCompare('tasktrack/auth.py', suggestion);
    assert.match(await workbench.statusText(), /^CodeRAG [\d.]+k?\/[\d.]+k · [\d.]+ m?s$/,
      'the status bar shows the latency');
  }));

test('the chat panel streams an answer, Stop stops it, and a source link opens the file at the cited lines',
  shot('chat', async () => {
    await workbench.runCommand('CodeRAG: Ask about this project');
    const chat = workbench.page.frameLocator('iframe.webview').frameLocator('iframe#active-frame');
    const ask = async (question: string) => {
      await chat.locator('#question').click();
      await workbench.page.keyboard.type(question);
      await workbench.page.keyboard.press('Enter');
    };
    const answer = chat.locator('.exchange').last().locator('.answer');
    const note = chat.locator('.exchange').last().locator('.note');

    // What the panel shows while the answer runs, frame by frame: it must show parts of it before the end.
    await chat.locator('#conversation').evaluate((conversation) => {
      const shown: string[] = [];
      Object.assign(globalThis, { shownWhileRunning: shown });
      const stop = conversation.ownerDocument.getElementById('stop')!;
      // The page's own MutationObserver (this file is compiled without the DOM's types).
      type Observer = new (changed: () => void) => { observe(node: unknown, options: object): void };
      const MutationObserver = (globalThis as unknown as { MutationObserver: Observer }).MutationObserver;
      new MutationObserver(() => {
        const text = [...conversation.querySelectorAll('.answer')].at(-1)?.textContent ?? '';
        if (!stop.hidden && text !== '' && text !== shown.at(-1)) {
          shown.push(text);
        }
      }).observe(conversation, { childList: true, subtree: true, characterData: true });
    });
    await ask('Where are session tokens signed and checked?');
    await until(async () => /tokens in/.test(await note.innerText()) || undefined, 'the answer to finish');
    const shown = await chat.locator('#conversation')
      .evaluate(() => (globalThis as unknown as { shownWhileRunning: string[] }).shownWhileRunning);
    const final = await answer.textContent();
    const partial = shown.filter((text) => text.length < final!.length);
    assert.ok(partial.length >= 2, `the answer streamed: ${partial.length} views of part of it before the whole`);
    const links = chat.locator('.exchange').last().locator('.sources .source-link');
    assert.ok(await links.count() > 0, 'the answer lists its sources');
    await workbench.screenshot('chat');
    const label = await links.first().innerText();
    const [, file, first, last] = /^(.+):(\d+)(?:-(\d+))?$/.exec(label)!;
    await links.first().click();
    await workbench.page.locator(`.tab.active[aria-label^="${path.basename(file)}"]`).waitFor();
    const cursor = await workbench.page.locator('.statusbar-item[id="status.editor.selection"]').innerText();
    const line = Number(/Ln (\d+)/.exec(cursor)![1]);
    assert.ok(line >= Number(first) && line <= Number(last ?? first) + 1, `the cursor (${cursor}) is at ${label}`);
    assert.match(cursor, /selected/, 'the cited lines are selected');

    // Stop, at once: the answer takes seconds (its prompt's prefill, then the tokens).
    await ask('Explain everything about session tokens in detail.');
    await chat.locator('#stop').click();
    await chat.locator('#stop').waitFor({ state: 'hidden' });
    assert.equal(await note.innerText(), 'Stopped.');
    const messages = tappedMessages(tap);
    const reply = replyTo(messages, messages.filter((m) => m.body.method === 'coderag/chat').at(-1));
    assert.equal((reply?.body.error as { code: number } | undefined)?.code, -32800, 'the daemon cancelled the request');
  }));

test('Find in Project by Meaning lists the matches and opens the one picked', shot('search', async () => {
  await workbench.runCommand('CodeRAG: Find in Project by Meaning');
  const input = await workbench.inputBox('CodeRAG: Find in Project by Meaning');
  await input.fill('reminder recurrence');
  await input.press('Enter');
  const rows = workbench.page.locator('.quick-input-list .monaco-list-row');
  const match = rows.filter({ hasText: 'tasktrack/scheduler.py' }).first();
  await match.waitFor();
  assert.ok(await rows.count() > 1, 'several matches are listed');
  await workbench.screenshot('search');
  const [, first, last] = /tasktrack\/scheduler\.py:(\d+)(?:-(\d+))?/.exec(await match.innerText())!;
  await match.click();
  await workbench.page.locator('.tab.active[aria-label^="scheduler.py"]').waitFor();
  const cursor = await workbench.page.locator('.statusbar-item[id="status.editor.selection"]').innerText();
  const line = Number(/Ln (\d+)/.exec(cursor)![1]);
  assert.ok(line >= Number(first) && line <= Number(last ?? first) + 1, `the cursor (${cursor}) is in the match`);
}));

test('a daemon killed from outside is restarted, and completions come back', shot('restart', async () => {
  const started = daemonPids(tap);
  process.kill(started.at(-1)!, 'SIGKILL');
  const restarted = 'The CodeRAG daemon stopped unexpectedly and was restarted.';
  await workbench.page.locator('.notification-toast', { hasText: restarted }).waitFor();
  await until(() => daemonPids(tap).length > started.length || undefined, 'a new daemon');
  await workbench.waitForStatus(/^CodeRAG [\d.]+k?\/[\d.]+k$/, SLOW);
  // The message read, the chat brought back beside the file, and on with the typing.
  await workbench.runCommand('Notifications: Clear All Notifications');
  await workbench.page.locator('.tab', { hasText: 'CodeRAG Chat' }).click();
  await workbench.page.locator('.tab[aria-label^="auth.py"]').click();
  const typed = Date.now();
  await typeAtEnd(['', 'def revoke(token):']);
  const suggestion = await ghostOfDaemon(typed);
  await workbench.screenshot('editor-chat-status');
  await acceptAndCompare('tasktrack/auth.py', suggestion);
}));
