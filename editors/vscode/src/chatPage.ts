// The chat panel's HTML. Only the bundled page script runs (by nonce) and only the extension's own
// files load: even if model output reached the DOM as HTML, it could run nothing.
import { randomBytes } from 'node:crypto';

export interface PageResources {
  /** The webview's source expression for the extension's files (webview.cspSource). */
  cspSource: string;
  scriptUri: string;
  styleUri: string;
}

export function chatPageHtml(resources: PageResources, nonce: string = randomBytes(18).toString('base64')): string {
  const source = attribute(resources.cspSource);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${source}; img-src ${source} data:; script-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${attribute(resources.styleUri)}">
<title>CodeRAG Chat</title>
</head>
<body>
<header><button id="new" type="button" title="Forget this conversation and start a new one">New conversation</button></header>
<main id="conversation" aria-live="polite"></main>
<form id="ask">
  <div id="attachment" hidden><span id="attachment-label"></span><button id="detach" type="button" title="Do not send the selection">×</button></div>
  <textarea id="question" rows="3" placeholder="Ask about this project (Enter to send, Shift+Enter for a new line)"></textarea>
  <div class="actions">
    <button id="send" type="submit">Ask</button>
    <button id="stop" type="button" hidden title="Stop the answer (Escape)">Stop</button>
  </div>
</form>
<script nonce="${nonce}" src="${attribute(resources.scriptUri)}"></script>
</body>
</html>
`;
}

function attribute(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
