// The packaged extension in a real VS Code with a daemon command that cannot work: missing, exiting
// as it starts, never answering. Each time the editor says so once, keeps working as an editor, and
// starts the daemon again on the next CodeRAG command, which works once the command is fixed.
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { sampleWorkspace, PYTHON } from '../daemon/daemonProcess';
import { daemonPids, tappedDaemon } from './daemonCommand';
import { runFolder, until, Workbench } from './workbench';

/** A shell script as the daemon command; it notes its process id, so the test can tell what ran. */
function writeDaemonScript(file: string, body: string): void {
  writeFileSync(file, `#!/bin/sh\necho $$ >> "${file}.pids"\n${body}\n`);
  chmodSync(file, 0o755);
}

/** The process ids the script noted, in order. */
function pidsOf(script: string): number[] {
  return readFileSync(`${script}.pids`, 'utf8').trim().split('\n').map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const quoted = (args: string[]) => args.map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ');

/** Opens a workbench whose daemon command is the script `body` (none: the command is missing), checks
 * the one message matching `message` and that the editor still edits, then fixes the script and runs
 * a CodeRAG command, which must start the daemon. */
async function badDaemon(name: string, body: string | undefined, message: RegExp): Promise<void> {
  const bin = runFolder(`${name}-bin`);
  const script = path.join(bin, 'coderag-daemon');
  if (body !== undefined) {
    writeDaemonScript(script, body);
  }
  const workspace = sampleWorkspace();
  const workbench = await Workbench.open({ name, workspace, settings: { 'coderag.daemon.command': [script] } });
  try {
    await workbench.page.locator('.notification-toast', { hasText: message }).waitFor();
    await workbench.waitForStatus(/^CodeRAG$/);
    assert.match(await workbench.statusLabel(), message, 'the status bar item says what is wrong');
    const started = body === undefined ? [] : pidsOf(script);
    await until(() => started.every((pid) => !alive(pid)) || undefined, 'the daemon processes to be gone');
    await workbench.screenshot(`${name}-message`);

    // Still an editor: open a file, type, save.
    await workbench.openFromExplorer('tasktrack/config.py');
    await workbench.clickIntoEditor();
    await workbench.page.keyboard.press('Control+End');
    await workbench.page.keyboard.type('\nDEBUG = False\n');
    await workbench.page.keyboard.press('Control+S');
    await workbench.page.locator('.tab.active.dirty').waitFor({ state: 'detached' });
    assert.match(readFileSync(path.join(workspace, 'tasktrack/config.py'), 'utf8'), /\nDEBUG = False\n$/);

    // One message, in all: the notification center lists every notification, also toasts gone by.
    await workbench.runCommand('Notifications: Show Notifications');
    const notifications = await workbench.page.locator('.notifications-center .notification-list-item-message')
      .allInnerTexts();
    assert.equal(notifications.length, 1, `one notification: ${JSON.stringify(notifications)}`);
    assert.match(notifications[0], message);
    if (body !== undefined) {
      assert.deepEqual(pidsOf(script), started, 'no more tries on its own');
    }
    await workbench.page.keyboard.press('Escape');

    // The daemon is installed for real now; the next CodeRAG command starts it.
    const tap = runFolder(`${name}-tap`);
    writeDaemonScript(script, `exec ${quoted(tappedDaemon(tap))}`);
    await workbench.runCommand('CodeRAG: Find in Project by Meaning');
    const input = await workbench.inputBox('CodeRAG: Find in Project by Meaning');
    await input.fill('settings');
    await input.press('Enter');
    await workbench.page.locator('.quick-input-list .monaco-list-row', { hasText: 'tasktrack/config.py' }).first()
      .waitFor();
    await workbench.page.keyboard.press('Escape');
    assert.equal(daemonPids(tap).length, 1);
    await workbench.waitForStatus(/^CodeRAG [\d.]+k?\/[\d.]+k/);
  } catch (error) {
    await workbench.screenshot(`failed-${name}`).catch(() => undefined);
    throw error;
  } finally {
    await workbench.close();
  }
}

test('a missing daemon command: one message, the editor edits, the next command starts the daemon once it is there',
  () => badDaemon('missing', undefined, /The CodeRAG daemon was not found/));

test('a daemon that exits as it starts: one message with its error, the editor edits, the next command retries',
  () => badDaemon('exits', `exec '${PYTHON}' -m coderag_daemon --n-ctx 5`, /The CodeRAG daemon .*exit.*--n-ctx/s));

test('a daemon that never answers: stopped after a while, one message, the editor edits, the next command retries',
  () => badDaemon('silent', 'exec sleep 3600', /The CodeRAG daemon did not answer/));
