import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { beforeEach, test } from 'node:test';
import type * as vscode from 'vscode';
import { activate, deactivate } from '../../src/extension';
import { EXTENSION_DIR, manifest } from '../support/packageSettings';
import { changeSettings, ConfigurationTarget, recorded, resetMock, Uri } from '../support/vscodeMock';

beforeEach(resetMock);

/** Activates with a daemon that cannot be found, so that no process is started. */
function activateWithoutDaemon(extension: { activate: typeof activate } = { activate }): vscode.Disposable[] {
  recorded.settings.set('coderag.daemon.pythonPath', path.join(mkdtempSync(path.join(tmpdir(), 'coderag-none-')), 'python'));
  recorded.settings.set('coderag.inlineCompletions.enable', true);
  const subscriptions: vscode.Disposable[] = [];
  extension.activate({ subscriptions, extensionUri: Uri.file('/ext') } as unknown as vscode.ExtensionContext);
  return subscriptions;
}

const commandNames = () => manifest.contributes.commands.map((c) => c.command).sort();

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('every command package.json names is registered, and no other', () => {
  const subscriptions = activateWithoutDaemon();
  assert.deepEqual([...recorded.commands.keys()].sort(), commandNames());
  assert.ok(manifest.contributes.menus['editor/context'].some((item) => item.command === 'coderag.ask' && item.when === 'editorHasSelection'));
  assert.ok(manifest.contributes.menus['editor/context'].some((item) => item.command === 'coderag.searchProject'));
  subscriptions.forEach((subscription) => subscription.dispose());
});

test('a missing daemon: one clear notification with the install command, and an error in the status bar', async () => {
  const subscriptions = activateWithoutDaemon();
  await settle();
  assert.equal(recorded.messages.length, 1);
  const [shown] = recorded.messages;
  assert.equal(shown.severity, 'error');
  assert.match(shown.message, /The CodeRAG daemon was not found: `.*python` is not an executable file/);
  assert.match(shown.message, /make setup/);
  assert.deepEqual(shown.actions, ['Open Settings']);
  const item = recorded.statusBarItems[0];
  assert.equal(item.text, '$(error) CodeRAG');
  assert.match(String(item.tooltip), /was not found/);

  // A command that needs the daemon looks for it again (it may have been installed since), and says
  // again that it is missing; it asks nothing.
  const notFound = () => recorded.messages.filter((m) => m.message.includes('was not found')).length;
  await recorded.commands.get('coderag.searchProject')!();
  assert.deepEqual(recorded.inputBoxes, []);
  assert.equal(notFound(), 2);
  await recorded.commands.get('coderag.showContext')!();
  assert.equal(notFound(), 3);
  assert.equal(recorded.messages.length, 3, 'nothing but that message');
  recorded.messageAnswer = 'Open Settings';
  await recorded.commands.get('coderag.restartDaemon')!();
  await settle();
  assert.equal(notFound(), 4);
  assert.deepEqual(recorded.executedCommands.at(-1), ['workbench.action.openSettings', 'coderag.daemon']);
  subscriptions.forEach((subscription) => subscription.dispose());
  await deactivate();
});

test('toggling inline completions flips the user setting and the status bar says so', async () => {
  const subscriptions = activateWithoutDaemon();
  await recorded.commands.get('coderag.toggleInlineCompletions')!();
  assert.deepEqual(recorded.settingUpdates, [{ name: 'coderag.inlineCompletions.enable', value: false, target: ConfigurationTarget.Global }]);
  assert.deepEqual(recorded.statusBarMessages, ['CodeRAG inline completions off']);
  assert.match(String(recorded.statusBarItems[0].tooltip), /Inline completions: off/);
  changeSettings({ 'coderag.inlineCompletions.enable': true });
  assert.match(String(recorded.statusBarItems[0].tooltip), /Inline completions: on/);
  subscriptions.forEach((subscription) => subscription.dispose());
});

test('the bundle VS Code loads (dist/extension.js, built first) activates the same way', () => {
  const bundle = createRequire(__filename)(path.join(EXTENSION_DIR, manifest.main)) as { activate: typeof activate };
  const subscriptions = activateWithoutDaemon(bundle);
  assert.deepEqual([...recorded.commands.keys()].sort(), commandNames());
  subscriptions.forEach((subscription) => subscription.dispose());
});
