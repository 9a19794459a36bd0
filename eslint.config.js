// Flat config: typescript-eslint's recommended rules, plus the layering of this codebase
// (docs/architecture.md): domain modules (fleet/ and runtime/ included) never import the apps
// (cli/, server/, agent/); server/ and agent/ never import each other; cli/ composes the other
// two only through their public faces, server/index.ts and agent/index.ts.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'fixtures/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', 'src/server/**', 'src/agent/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/cli/**', '**/server/**', '**/agent/**'],
              message: 'Domain modules must not import cli/, server/ or agent/.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/server/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/cli/**', '**/agent/**'],
              message: 'server/ must not import cli/ or agent/; shared device <-> control-plane code lives in fleet/.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/agent/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/cli/**', '**/server/**'],
              message: 'agent/ must not import cli/ or server/; shared device <-> control-plane code lives in fleet/.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/server/**', '!**/server/index.ts', '**/agent/**', '!**/agent/index.ts'],
              message: 'cli/ may use server/ and agent/ only through server/index.ts and agent/index.ts.',
            },
          ],
        },
      ],
    },
  },
);
