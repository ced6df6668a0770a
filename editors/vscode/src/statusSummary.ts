// The words and icon of the status bar item, from the client's state and the daemon's last status.
import { formatMs, formatTokens, latencyMs } from './format';
import { DaemonStatus } from './protocol';

export type ClientPhase = 'starting' | 'running' | 'stopped';

export interface StatusView {
  phase: ClientPhase;
  /** The latest coderag/status of the running daemon. */
  status?: DaemonStatus;
  /** Why the daemon is not running (not found, gave up after crashes). */
  problem?: string;
  inlineEnabled: boolean;
}

export interface StatusSummary {
  text: string;
  tooltip: string;
  error: boolean;
}

const ICONS = { ready: '$(check)', preloading: '$(sync~spin)', busy: '$(loading~spin)' } as const;

export function summarize(view: StatusView): StatusSummary {
  const completions = `Inline completions: ${view.inlineEnabled ? 'on' : 'off'}`;
  if (view.problem !== undefined) {
    return { text: '$(error) CodeRAG', tooltip: `${view.problem}\n${completions}`, error: true };
  }
  if (view.phase === 'stopped') {
    return { text: '$(debug-disconnect) CodeRAG', tooltip: `The CodeRAG daemon is not running.\n${completions}`, error: false };
  }
  const status = view.status;
  if (view.phase === 'starting' || status === undefined) {
    return { text: '$(loading~spin) CodeRAG', tooltip: `Starting the CodeRAG daemon…\n${completions}`, error: false };
  }
  if (status.state === 'loading') {
    return { text: '$(loading~spin) CodeRAG loading', tooltip: `Loading ${status.model ?? 'the model'}…\n${completions}`, error: false };
  }
  if (status.state === 'error') {
    return { text: '$(error) CodeRAG', tooltip: `${status.error ?? 'The model is not available.'}\n${completions}`, error: true };
  }
  const latency = status.lastRequest === undefined ? '' : ` · ${formatMs(latencyMs(status.lastRequest))}`;
  return {
    text: `${ICONS[status.state]} CodeRAG ${formatTokens(status.tokensCached)}/${formatTokens(status.nCtx)}${latency}`,
    tooltip: [
      `CodeRAG daemon: ${status.state}`,
      `Model: ${status.model ?? 'default'}`,
      `Cached: ${status.tokensCached} of ${status.nCtx} tokens, ${status.files} files (${status.strategy ?? 'no cache strategy'})`,
      ...lastRequestLine(status),
      completions,
      'Click to show the context.',
    ].join('\n'),
    error: false,
  };
}

function lastRequestLine(status: DaemonStatus): string[] {
  const last = status.lastRequest;
  if (last === undefined) {
    return [];
  }
  return [
    `Last ${last.kind ?? 'request'}: ${formatMs(latencyMs(last))}, first token after ${formatMs(last.timeToFirstTokenMs)}, ` +
      `${last.tokensGenerated} tokens generated, ${last.tokensReprocessed} reprocessed`,
  ];
}
