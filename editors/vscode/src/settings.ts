// The extension's settings (section "coderag"): those the daemon reads, sent as initializationOptions
// and workspace/didChangeConfiguration, and those only the extension reads.

/** Where a setting's value comes from (the part of vscode's inspect() result this module reads). */
export interface SettingSources<T> {
  globalValue?: T;
  workspaceValue?: T;
  workspaceFolderValue?: T;
}

/** The part of vscode.WorkspaceConfiguration this module reads. */
export interface Configuration {
  get<T>(name: string): T | undefined;
  inspect<T>(name: string): SettingSources<T> | undefined;
}

export const SECTION = 'coderag';

/** Settings the daemon understands, under the names of its protocol's settings table. */
export const DAEMON_SETTINGS = [
  'modelPath',
  'nCtx',
  'threads',
  'checkpointInterval',
  'checkpointMemoryMiB',
  'preloadDelayMs',
  'contextTokens',
  'maxCompletionTokens',
  'maxChatTokens',
  'completionTimeBudgetMs',
  'completionWaitTokens',
  'retrievalTokens',
  'completionDefinitionTokens',
  'ignoreGlobs',
  'maxFileKiB',
  'persistCache',
  'persistIntervalMs',
  'persistBudgetMiB',
  'engine',
  'engineApiKey',
  'engineSlot',
] as const;

export type DaemonOptions = Partial<Record<(typeof DAEMON_SETTINGS)[number], unknown>>;

/** Whether the user set `name` (in the user, workspace or folder settings) rather than left it at its default. */
function isSet(config: Configuration, name: string): boolean {
  const sources = config.inspect(name);
  return [sources?.globalValue, sources?.workspaceValue, sources?.workspaceFolderValue].some((v) => v !== undefined);
}

/** The daemon's settings that the user set, as VS Code resolves them, and those of `also` (set or not).
 * A setting left at its default is not sent, so the daemon's own value applies: its default, or a flag
 * of `coderag.daemon.command` (`--model`, `--threads`…). `also` names the settings sent before, so a
 * value the user removes goes back to its default in the daemon too. An empty model path means the
 * daemon's default model. */
export function daemonOptions(config: Configuration, also: Iterable<string> = []): DaemonOptions {
  const sent = new Set(also);
  const options: DaemonOptions = {};
  for (const name of DAEMON_SETTINGS) {
    const value = config.get<unknown>(name);
    if (value !== undefined && (sent.has(name) || isSet(config, name))) {
      options[name] = name === 'modelPath' ? modelPath(value) : value;
    }
  }
  return options;
}

function modelPath(value: unknown): string | null {
  const model = typeof value === 'string' ? value.trim() : '';
  return model === '' ? null : model;
}

export type Trigger = 'automatic' | 'onDemand';

export interface InlineSettings {
  enabled: boolean;
  trigger: Trigger;
  /** Language ids to complete in; "*" for all. */
  languages: string[];
}

export function inlineSettings(config: Configuration): InlineSettings {
  return {
    enabled: config.get<boolean>('inlineCompletions.enable') ?? true,
    trigger: config.get<string>('inlineCompletions.trigger') === 'onDemand' ? 'onDemand' : 'automatic',
    languages: config.get<string[]>('inlineCompletions.languages') ?? ['*'],
  };
}

export interface LaunchSettings {
  /** A command line (program and arguments) that starts the daemon on stdio. */
  command: string[];
  /** A Python interpreter that has coderag_daemon installed. */
  pythonPath: string;
}

export function launchSettings(config: Configuration): LaunchSettings {
  return {
    command: (config.get<string[]>('daemon.command') ?? []).filter((part) => part !== ''),
    pythonPath: (config.get<string>('daemon.pythonPath') ?? '').trim(),
  };
}
