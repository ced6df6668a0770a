// A stand-in for the `vscode` module: the parts the extension uses, recording what it shows.
// Tests read and reset `recorded`; `vscodeModule.ts` makes `require('vscode')` return this.

type Listener<T> = (event: T) => unknown;

export class EventEmitter<T> {
  private listeners: Listener<T>[] = [];
  event = (listener: Listener<T>, thisArgs?: unknown): Disposable => {
    const bound = listener.bind(thisArgs);
    this.listeners.push(bound);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((other) => other !== bound);
    });
  };
  fire(event: T): void {
    this.listeners.forEach((listener) => listener(event));
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Disposable {
  constructor(private readonly onDispose: () => void = () => undefined) {}
  dispose(): void {
    this.onDispose();
  }
}

export class Uri {
  private constructor(readonly scheme: string, readonly path: string) {}
  static parse(value: string): Uri {
    const [scheme, rest] = value.split(/:(.*)/s);
    return new Uri(scheme, rest.replace(/^\/\//, ''));
  }
  static file(path: string): Uri {
    return new Uri('file', path);
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return new Uri(base.scheme, [base.path, ...parts].join('/'));
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return `${this.scheme}://${this.path}`;
  }
}

export class Position {
  constructor(readonly line: number, readonly character: number) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(start: Position | number, end: Position | number, endLine?: number, endCharacter?: number) {
    const both = typeof start === 'number';
    this.start = both ? new Position(start, end as number) : start;
    this.end = both ? new Position(endLine!, endCharacter!) : (end as Position);
  }
}

export class InlineCompletionItem {
  constructor(readonly insertText: string, readonly range?: Range) {}
}

export class InlineCompletionList {
  constructor(readonly items: InlineCompletionItem[]) {}
}

export class Selection {
  constructor(readonly anchor: Position, readonly active: Position) {}
  get start(): Position {
    return this.before(this.anchor, this.active) ? this.anchor : this.active;
  }
  get end(): Position {
    return this.before(this.anchor, this.active) ? this.active : this.anchor;
  }
  get isEmpty(): boolean {
    return this.anchor.line === this.active.line && this.anchor.character === this.active.character;
  }
  private before(a: Position, b: Position): boolean {
    return a.line < b.line || (a.line === b.line && a.character <= b.character);
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum ViewColumn { Active = -1, Beside = -2, One = 1 }
export enum ConfigurationTarget { Global = 1, Workspace = 2, WorkspaceFolder = 3 }
export enum InlineCompletionTriggerKind { Invoke = 0, Automatic = 1 }
export enum ProgressLocation { SourceControl = 1, Window = 10, Notification = 15 }
export enum LogLevel { Off = 0, Trace = 1, Debug = 2, Info = 3, Warning = 4, Error = 5 }

export interface FakeStatusBarItem {
  id: string;
  text: string;
  tooltip: unknown;
  command: unknown;
  name: string;
  backgroundColor: ThemeColor | undefined;
  visible: boolean;
  show(): void;
  dispose(): void;
}

export interface FakeWebviewPanel {
  webview: {
    html: string;
    cspSource: string;
    options: unknown;
    posted: unknown[];
    postMessage(message: unknown): Promise<boolean>;
    asWebviewUri(uri: Uri): Uri;
    onDidReceiveMessage: (listener: Listener<unknown>) => Disposable;
    receive(message: unknown): void;
  };
  /** Where VS Code put the panel; unknown until a test says. */
  viewColumn: number | undefined;
  revealed: number;
  reveal(): void;
  onDidDispose: (listener: Listener<void>) => Disposable;
  dispose(): void;
}

export interface FakeEditor {
  document: { uri: Uri; isClosed: boolean; getText?(range?: Range): string };
  selection: Selection;
}

/** What the extension did to the fake VS Code, and the answers it will get. */
export const recorded = {
  messages: [] as { severity: 'error' | 'warning' | 'info'; message: string; actions: string[] }[],
  /** What the next popup resolves to (the action the "user" picks). */
  messageAnswer: undefined as string | undefined,
  statusBarItems: [] as FakeStatusBarItem[],
  statusBarMessages: [] as string[],
  quickPicks: [] as { items: unknown[]; options: unknown }[],
  quickPickAnswer: (items: unknown[]): unknown => items[0],
  shownDocuments: [] as Uri[],
  /** The options each shown document was opened with, in the same order. */
  shownOptions: [] as ({ selection?: Range; viewColumn?: ViewColumn } | undefined)[],
  inputBoxes: [] as { title?: string; value?: string; prompt?: string }[],
  /** What the next input box resolves to (what the "user" typed); undefined is Escape. */
  inputBoxAnswer: (options: { value?: string }): string | undefined => options.value,
  panels: [] as FakeWebviewPanel[],
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  executedCommands: [] as unknown[][],
  settings: new Map<string, unknown>(),
  settingUpdates: [] as { name: string; value: unknown; target: ConfigurationTarget }[],
  activeTextEditor: undefined as FakeEditor | undefined,
};

const configurationChanged = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
const activeEditorChanged = new EventEmitter<FakeEditor | undefined>();

/** Events the fake never fires but vscode-languageclient subscribes to. */
const quiet = () => new EventEmitter<unknown>().event;

/** A text document whose lines end in \n. */
export class FakeTextDocument {
  isClosed = false;
  readonly isDirty = false;
  readonly isUntitled = false;
  constructor(readonly uri: Uri, readonly languageId: string, public version: number, private text: string) {}
  get fileName(): string {
    return this.uri.fsPath;
  }
  get lineCount(): number {
    return this.text.split('\n').length;
  }
  getText(): string {
    return this.text;
  }
  offsetAt(position: Position): number {
    const lines = this.text.split('\n').slice(0, position.line);
    return lines.reduce((offset, line) => offset + line.length + 1, 0) + position.character;
  }
  replace(range: Range, text: string): { range: Range; rangeOffset: number; rangeLength: number; text: string } {
    const start = this.offsetAt(range.start);
    const end = this.offsetAt(range.end);
    this.text = this.text.slice(0, start) + text + this.text.slice(end);
    this.version++;
    return { range, rangeOffset: start, rangeLength: end - start, text };
  }
}

const documentOpened = new EventEmitter<FakeTextDocument>();
const documentChanged = new EventEmitter<unknown>();

/** Open a document as the user would. */
export function openDocument(document: FakeTextDocument): void {
  workspace.textDocuments.push(document);
  documentOpened.fire(document);
}

/** Type `text` over `range` as the user would. */
export function editDocument(document: FakeTextDocument, range: Range, text: string): void {
  const change = document.replace(range, text);
  documentChanged.fire({ document, contentChanges: [change], reason: undefined });
}

export function resetMock(): void {
  recorded.messages = [];
  recorded.messageAnswer = undefined;
  recorded.statusBarItems = [];
  recorded.statusBarMessages = [];
  recorded.quickPicks = [];
  recorded.quickPickAnswer = (items) => items[0];
  recorded.shownDocuments = [];
  recorded.shownOptions = [];
  recorded.inputBoxes = [];
  recorded.inputBoxAnswer = (options) => options.value;
  recorded.panels = [];
  recorded.commands.clear();
  recorded.executedCommands = [];
  recorded.settings.clear();
  recorded.settingUpdates = [];
  recorded.activeTextEditor = undefined;
  workspace.textDocuments.length = 0;
  workspace.workspaceFolders = undefined;
}

/** Switch editors as the user would; undefined is a webview or panel taking the focus. */
export function focusEditor(editor: FakeEditor | undefined): void {
  recorded.activeTextEditor = editor;
  activeEditorChanged.fire(editor);
}

/** Change settings as the user would; `section.name` keys as in package.json. */
export function changeSettings(changes: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(changes)) {
    recorded.settings.set(name, value);
  }
  configurationChanged.fire({
    affectsConfiguration: (section) => Object.keys(changes).some((name) => name === section || name.startsWith(`${section}.`)),
  });
}

function message(severity: 'error' | 'warning' | 'info') {
  return async (text: string, ...actions: string[]): Promise<string | undefined> => {
    recorded.messages.push({ severity, message: text, actions });
    return recorded.messageAnswer;
  };
}

function logChannel(name: string) {
  const lines: string[] = [];
  const log = (line: string) => void lines.push(line);
  return { name, lines, appendLine: log, append: log, trace: log, debug: log, info: log, warn: log, error: log,
    logLevel: LogLevel.Info, onDidChangeLogLevel: quiet(), show: () => undefined, dispose: () => undefined };
}

export const window = {
  get activeTextEditor() {
    return recorded.activeTextEditor;
  },
  onDidChangeActiveTextEditor: activeEditorChanged.event,
  tabGroups: { all: [], onDidChangeTabs: quiet(), onDidChangeTabGroups: quiet() },
  visibleTextEditors: [],
  onDidChangeVisibleTextEditors: quiet(),
  showErrorMessage: message('error'),
  showWarningMessage: message('warning'),
  showInformationMessage: message('info'),
  setStatusBarMessage(text: string): Disposable {
    recorded.statusBarMessages.push(text);
    return new Disposable();
  },
  createOutputChannel: logChannel,
  async withProgress<T>(_options: unknown, task: (progress: unknown, token: unknown) => Promise<T>): Promise<T> {
    return task({ report: () => undefined }, { isCancellationRequested: false, onCancellationRequested: quiet() });
  },
  createStatusBarItem(id: string): FakeStatusBarItem {
    const item: FakeStatusBarItem = {
      id, text: '', tooltip: undefined, command: undefined, name: '', backgroundColor: undefined, visible: false,
      show: () => void (item.visible = true),
      dispose: () => void (item.visible = false),
    };
    recorded.statusBarItems.push(item);
    return item;
  },
  async showQuickPick(items: unknown[], options: unknown): Promise<unknown> {
    recorded.quickPicks.push({ items, options });
    return recorded.quickPickAnswer(items);
  },
  async showTextDocument(uri: Uri, options?: { selection?: Range; viewColumn?: ViewColumn }): Promise<void> {
    recorded.shownDocuments.push(uri);
    recorded.shownOptions.push(options);
  },
  async showInputBox(options: { title?: string; value?: string; prompt?: string }): Promise<string | undefined> {
    recorded.inputBoxes.push(options);
    return recorded.inputBoxAnswer(options);
  },
  createWebviewPanel(_viewType: string, _title: string, _column: ViewColumn, options: unknown): FakeWebviewPanel {
    const received = new EventEmitter<unknown>();
    const disposed = new EventEmitter<void>();
    const panel: FakeWebviewPanel = {
      webview: {
        html: '',
        cspSource: 'https://webview.test',
        options,
        posted: [],
        postMessage: async (posted) => {
          panel.webview.posted.push(posted);
          return true;
        },
        asWebviewUri: (uri) => Uri.parse(`https://webview.test/${uri.path}`),
        onDidReceiveMessage: received.event,
        receive: (sent) => received.fire(sent),
      },
      viewColumn: undefined,
      revealed: 0,
      reveal: () => void panel.revealed++,
      onDidDispose: disposed.event,
      dispose: () => disposed.fire(),
    };
    recorded.panels.push(panel);
    return panel;
  },
};

/** The VS Code release the extension is built for (package.json's engines). */
export const version = '1.91.0';

export const env = { language: 'en', appName: 'Visual Studio Code' };

export const languages = {
  inlineCompletionProviders: [] as { selector: unknown; provider: unknown }[],
  match: () => 10,
  registerInlineCompletionItemProvider(selector: unknown, provider: unknown): Disposable {
    languages.inlineCompletionProviders.push({ selector, provider });
    return new Disposable(() => languages.inlineCompletionProviders.splice(0));
  },
  createDiagnosticCollection: () => ({ set: () => undefined, delete: () => undefined, clear: () => undefined, dispose: () => undefined }),
};

export const workspace = {
  textDocuments: [] as FakeTextDocument[],
  notebookDocuments: [],
  onDidOpenTextDocument: documentOpened.event,
  onDidChangeTextDocument: documentChanged.event,
  onDidCloseTextDocument: quiet(),
  onDidSaveTextDocument: quiet(),
  onWillSaveTextDocument: quiet(),
  onDidOpenNotebookDocument: quiet(),
  onDidChangeNotebookDocument: quiet(),
  onDidSaveNotebookDocument: quiet(),
  onDidCloseNotebookDocument: quiet(),
  onDidChangeWorkspaceFolders: quiet(),
  getConfiguration(section: string) {
    const get = <T>(name: string): T | undefined => recorded.settings.get(`${section}.${name}`) as T | undefined;
    return {
      get,
      inspect: (name: string) => ({ key: `${section}.${name}`, workspaceValue: undefined, globalValue: get(name) }),
      async update(name: string, value: unknown, target: ConfigurationTarget): Promise<void> {
        recorded.settingUpdates.push({ name: `${section}.${name}`, value, target });
        changeSettings({ [`${section}.${name}`]: value });
      },
    };
  },
  onDidChangeConfiguration: configurationChanged.event,
  asRelativePath: (uri: Uri) => uri.path.replace(/^\/project\//, ''),
  workspaceFolders: undefined as { uri: Uri; name: string; index: number }[] | undefined,
};

export const commands = {
  registerCommand(name: string, handler: (...args: unknown[]) => unknown): Disposable {
    recorded.commands.set(name, handler);
    return new Disposable(() => recorded.commands.delete(name));
  },
  async executeCommand(...args: unknown[]): Promise<void> {
    recorded.executedCommands.push(args);
  },
};
