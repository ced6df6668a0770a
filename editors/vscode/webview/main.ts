// The chat panel's page: shows the conversation, renders the streamed answer as Markdown, and sends
// questions, "stop" and clicked sources to the extension.
import type { FromPage, ShownExchange, ShownSource, ToPage } from '../src/chatMessages';
import { renderMarkdown } from './markdown';
import { linkMentions } from './mentions';

declare function acquireVsCodeApi(): { postMessage(message: FromPage): void };

const vscode = acquireVsCodeApi();

function element<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

const conversation = element<HTMLElement>('conversation');
const form = element<HTMLFormElement>('ask');
const question = element<HTMLTextAreaElement>('question');
const send = element<HTMLButtonElement>('send');
const stop = element<HTMLButtonElement>('stop');
const attachment = element<HTMLElement>('attachment');
const attachmentLabel = element<HTMLElement>('attachment-label');

/** The answer being streamed: its text so far and where it is shown. */
let streaming: { text: string; answer: HTMLElement; sources: HTMLElement; note: HTMLElement; frame?: number } | undefined;

interface ExchangeView {
  answer: HTMLElement;
  sources: HTMLElement;
  note: HTMLElement;
}

function exchangeView(asked: string): ExchangeView {
  const block = document.createElement('section');
  block.className = 'exchange';
  const questionView = document.createElement('div');
  questionView.className = 'question';
  questionView.textContent = asked;
  const answer = document.createElement('div');
  answer.className = 'answer';
  const sources = document.createElement('nav');
  sources.className = 'sources';
  sources.setAttribute('aria-label', 'Sources');
  sources.hidden = true;
  const note = document.createElement('div');
  note.className = 'note';
  block.append(questionView, answer, sources, note);
  conversation.append(block);
  return { answer, sources, note };
}

/** A link-styled button that asks the extension to open `source` (a button: the webview host
 * handles clicks on <a href> itself). Model text only ever goes in as text. */
function sourceLink(source: ShownSource, text: string): HTMLButtonElement {
  const link = document.createElement('button');
  link.type = 'button';
  link.className = 'source-link';
  link.textContent = text;
  link.title = `Open ${source.label}`;
  link.addEventListener('click', () => vscode.postMessage({ type: 'openSource', uri: source.uri, label: source.label }));
  return link;
}

function showSources(view: ExchangeView, sources: ShownSource[]): void {
  const heading = document.createElement('div');
  heading.className = 'sources-heading';
  heading.textContent = 'Sources';
  const list = document.createElement('ul');
  for (const source of sources) {
    const title = document.createElement('span');
    title.className = 'source-title';
    title.textContent = source.title;
    const item = document.createElement('li');
    item.append(sourceLink(source, source.label), ' ', title);
    list.append(item);
  }
  view.sources.replaceChildren(heading, list);
  view.sources.hidden = sources.length === 0;
}

function showExchange(exchange: ShownExchange, view = exchangeView(exchange.question)): void {
  view.answer.innerHTML = renderMarkdown(exchange.answer);
  linkMentions(view.answer, exchange.sources, sourceLink);
  showSources(view, exchange.sources);
  view.note.textContent = exchange.note;
  view.note.classList.toggle('failed', exchange.failed);
}

function setRunning(running: boolean): void {
  send.disabled = running;
  stop.hidden = !running;
}

function scrollToEnd(): void {
  conversation.scrollTop = conversation.scrollHeight;
}

function handle(message: ToPage): void {
  switch (message.type) {
    case 'conversation':
      conversation.replaceChildren();
      message.exchanges.forEach((exchange) => showExchange(exchange));
      break;
    case 'attachment':
      attachment.hidden = message.label === undefined;
      attachmentLabel.textContent = message.label ?? '';
      break;
    case 'started':
      streaming = { text: '', ...exchangeView(message.question) };
      streaming.note.textContent = 'Thinking…';
      setRunning(true);
      break;
    case 'delta':
      if (streaming !== undefined) {
        streaming.text += message.text;
        // Render once per frame, however many pieces arrive in between.
        streaming.frame ??= requestAnimationFrame(() => {
          if (streaming !== undefined) {
            streaming.frame = undefined;
            streaming.answer.innerHTML = renderMarkdown(streaming.text);
            streaming.note.textContent = '';
          }
        });
      }
      break;
    case 'finished':
      if (streaming !== undefined) {
        if (streaming.frame !== undefined) {
          cancelAnimationFrame(streaming.frame);
        }
        showExchange(message.exchange, streaming);
        streaming = undefined;
      }
      setRunning(false);
      break;
  }
  scrollToEnd();
}

window.addEventListener('message', (event: MessageEvent<ToPage>) => handle(event.data));

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (text === '' || streaming !== undefined) {
    return;
  }
  vscode.postMessage({ type: 'ask', question: text });
  question.value = '';
});

question.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && streaming !== undefined) {
    vscode.postMessage({ type: 'stop' });
  }
});

stop.addEventListener('click', () => vscode.postMessage({ type: 'stop' }));
element<HTMLButtonElement>('new').addEventListener('click', () => vscode.postMessage({ type: 'newConversation' }));
element<HTMLButtonElement>('detach').addEventListener('click', () => vscode.postMessage({ type: 'detach' }));

vscode.postMessage({ type: 'ready' });
question.focus();
