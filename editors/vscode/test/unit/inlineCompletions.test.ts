import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as vscode from 'vscode';
import { inlineCompletionMiddleware, wantsCompletion } from '../../src/inlineCompletions';
import { InlineSettings } from '../../src/settings';

const { Automatic, Invoke } = vscode.InlineCompletionTriggerKind;
const on: InlineSettings = { enabled: true, trigger: 'automatic', languages: ['*'] };

test('completions are asked for in the enabled languages only', () => {
  assert.equal(wantsCompletion(on, 'python', Automatic), true);
  const some = { ...on, languages: ['python', 'typescript'] };
  assert.equal(wantsCompletion(some, 'typescript', Automatic), true);
  assert.equal(wantsCompletion(some, 'markdown', Automatic), false);
  assert.equal(wantsCompletion(some, 'markdown', Invoke), false);
});

test('disabled completions are never asked for', () => {
  assert.equal(wantsCompletion({ ...on, enabled: false }, 'python', Invoke), false);
});

test('on demand, only an explicit trigger asks', () => {
  const onDemand = { ...on, trigger: 'onDemand' as const };
  assert.equal(wantsCompletion(onDemand, 'python', Automatic), false);
  assert.equal(wantsCompletion(onDemand, 'python', Invoke), true);
});

test('the middleware passes wanted requests on and answers the others itself, reading the settings each time', async () => {
  let settings = on;
  const middleware = inlineCompletionMiddleware(() => settings);
  const provide = middleware.provideInlineCompletionItems!;
  const calls: unknown[] = [];
  const next = (...args: unknown[]) => {
    calls.push(args);
    return [];
  };
  const document = { languageId: 'python' } as vscode.TextDocument;
  const position = new vscode.Position(1, 2);
  const token = {} as vscode.CancellationToken;
  assert.deepEqual(await provide(document, position, { triggerKind: Automatic } as vscode.InlineCompletionContext, token, next), []);
  assert.equal(calls.length, 1);
  settings = { ...on, enabled: false };
  assert.equal(await provide(document, position, { triggerKind: Invoke } as vscode.InlineCompletionContext, token, next), null);
  assert.equal(calls.length, 1);
});
