// The settings package.json contributes, resolved as VS Code would: a user value, else the default.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Configuration, SECTION } from '../../src/settings';

/** The extension's folder (tests run from out/test/<kind>/). */
export const EXTENSION_DIR = path.resolve(__dirname, '../../..');

interface Contributed {
  default: unknown;
  minimum?: number;
  maximum?: number;
}

export const manifest = JSON.parse(readFileSync(path.join(EXTENSION_DIR, 'package.json'), 'utf8')) as {
  main: string;
  contributes: {
    configuration: { properties: Record<string, Contributed> };
    commands: { command: string }[];
    menus: Record<string, { command: string; when?: string }[]>;
  };
};

export const contributed = manifest.contributes.configuration.properties;

/** Settings of section "coderag" from package.json's defaults, with `values` (names without the section) set by the user. */
export function configuration(values: Record<string, unknown> = {}): Configuration {
  return {
    get<T>(name: string): T | undefined {
      return (name in values ? values[name] : contributed[`${SECTION}.${name}`]?.default) as T | undefined;
    },
    inspect<T>(name: string) {
      return { globalValue: values[name] as T | undefined };
    },
  };
}
