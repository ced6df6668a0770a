// The extension's settings (section "coderag"): those the daemon reads, sent as initializationOptions
// and workspace/didChangeConfiguration, and those only the extension reads.

/** The part of vscode.WorkspaceConfiguration this module reads. */
export interface Configuration {
  get<T>(name: string): T | undefined;
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
  'ignoreGlobs',
  'maxFileKiB',
] as const;

export type DaemonOptions = Partial<Record<(typeof DAEMON_SETTINGS)[number], unknown>>;

/** The daemon's settings as VS Code resolves them (user, workspace or default value). The VS Code
 * settings are the source of truth: every one is sent, so a value the user removes goes back to its
 * default in the daemon too. An empty model path means the daemon's own default model. */
export function daemonOptions(config: Configuration): DaemonOptions {
  const options: DaemonOptions = {};
  for (const name of DAEMON_SETTINGS) {
    const value = config.get<unknown>(name);
    if (value !== undefined) {
      options[name] = value;
    }
  }
  const model = typeof options.modelPath === 'string' ? options.modelPath.trim() : '';
  options.modelPath = model === '' ? null : model;
  return options;
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
