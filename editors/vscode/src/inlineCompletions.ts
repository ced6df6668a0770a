// Which inline completion requests reach the daemon. Every file is synchronised (the chat and the
// completions see the whole open project), but suggestions are only asked for where the user wants them.
import * as vscode from 'vscode';
import { Middleware } from 'vscode-languageclient/node';
import { InlineSettings } from './settings';

export function wantsCompletion(settings: InlineSettings, languageId: string, trigger: vscode.InlineCompletionTriggerKind): boolean {
  if (!settings.enabled) {
    return false;
  }
  if (settings.trigger === 'onDemand' && trigger === vscode.InlineCompletionTriggerKind.Automatic) {
    return false;
  }
  return settings.languages.includes('*') || settings.languages.includes(languageId);
}

/** Settings are read on every request, so a change applies to the next keystroke. */
export function inlineCompletionMiddleware(settings: () => InlineSettings): Middleware {
  return {
    provideInlineCompletionItems: (document, position, context, token, next) =>
      wantsCompletion(settings(), document.languageId, context.triggerKind) ? next(document, position, context, token) : null,
  };
}
