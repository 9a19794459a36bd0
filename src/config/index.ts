/**
 * Public face of config: how a YAML configuration file is read (agent.yaml, the guard's, the
 * server's). Kept out of errors/ so that a CLI start that loads only error codes does not load a
 * YAML parser.
 */
export { checkConfig, parseYamlText } from './config-check.ts';
