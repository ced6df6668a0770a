// The daemon's own LSP methods (docs/PROTOCOL.md in the daemon's repository), typed for
// vscode-languageserver-protocol so that LanguageClient and a bare protocol connection share them.
import { NotificationType, Position, Range, RequestType } from 'vscode-languageserver-protocol/node';

export type DaemonState = 'loading' | 'ready' | 'preloading' | 'busy' | 'error';

export interface RequestFigures {
  seq?: number;
  kind?: 'completion' | 'chat';
  tokensInContext: number;
  tokensReprocessed: number;
  tokensKept?: number;
  restoreKind?: string;
  prefillMs: number;
  timeToFirstTokenMs: number;
  generationMs: number;
  tokensGenerated: number;
  stopReason: string;
}

export interface DaemonStatus {
  state: DaemonState;
  model: string | null;
  error: string | null;
  tokensCached: number;
  nCtx: number;
  checkpoints: number;
  checkpointBytes: number;
  strategy: string | null;
  files: number;
  last?: { tokensReprocessed: number; tokensKept: number; prefillMs: number; restoreKind: string };
  lastRequest?: RequestFigures;
}
export const StatusNotification = new NotificationType<DaemonStatus>('coderag/status');

export interface ChatTurn {
  role: 'user' | 'assistant';
  content: string;
}

export interface ChatParams {
  question: string;
  history: ChatTurn[];
  uri?: string;
  position?: Position;
  selection?: Range;
  token?: string;
}
/** A chunk of a file the daemon gave the model with a question, for the answer to cite. */
export interface Source {
  uri: string;
  /** Relative to the workspace root. */
  path: string;
  range: Range;
  /** "tasktrack/auth.py:96-131": one-based lines, as the answer cites them. */
  label: string;
  title: string;
  score: number;
}

export interface ChatResult {
  answer: string;
  stats: RequestFigures;
  /** Absent from daemons older than retrieval. */
  sources?: Source[];
}
export const ChatRequest = new RequestType<ChatParams, ChatResult, void>('coderag/chat');

export interface ChatDelta {
  token: string | number;
  delta: string;
  /** On the last delta of an answer (its `delta` empty), with the answer's sources. */
  done?: boolean;
  sources?: Source[];
}
export const ChatDeltaNotification = new NotificationType<ChatDelta>('coderag/chatDelta');

export interface ContextFile {
  path: string;
  uri: string;
  tokens: number;
  start: number;
  cached: boolean;
  truncated: boolean;
}
export interface ContextResult {
  tokensCached: number;
  nCtx: number;
  files: ContextFile[];
}
export const ContextRequest = new RequestType<Record<string, never>, ContextResult, void>('coderag/context');

export const ClearCacheRequest = new RequestType<Record<string, never>, Record<string, never>, void>('coderag/clearCache');

export const DocumentTextRequest = new RequestType<{ uri: string }, { text: string; version: number | null }, void>(
  'coderag/documentText',
);

export interface SearchParams {
  query: string;
  /** 1–100; the daemon's default is 20. */
  limit?: number;
}
export interface SearchHit extends Source {
  text: string;
}
export interface SearchResult {
  /** The first build of the index is still running: results cover the files indexed so far. */
  indexing: boolean;
  files: number;
  results: SearchHit[];
}
export const SearchRequest = new RequestType<SearchParams, SearchResult, void>('coderag/search');

/** What the client layer needs from a connection: LanguageClient and a protocol connection both fit. */
export interface DaemonConnection {
  sendRequest<P, R, E>(type: RequestType<P, R, E>, params: P, token?: CancellationLike): Promise<R>;
  onNotification<P>(type: NotificationType<P>, handler: (params: P) => void): { dispose(): void };
}

/** The shape vscode's and vscode-jsonrpc's cancellation tokens share. */
export interface CancellationLike {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => unknown): { dispose(): unknown };
}
