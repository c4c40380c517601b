/**
 * The CLI's exit codes: one table, printed by `cleanroom --help` and documented in README.md, so
 * a script can tell "the service said no" from "the query failed" from "nothing answered".
 */
export const EXIT = {
  /** Done; with `--wait`, the query SUCCEEDED. */
  ok: 0,
  /** Refused: the API (a 4xx code), the worker's attestation or a check of the CLI said no. */
  refused: 1,
  /** The command line or the environment is wrong. */
  usage: 2,
  /** With `--wait`: the query ended FAILED, REJECTED, CANCELLED or EXPIRED. */
  queryUnsuccessful: 3,
  /** No usable answer: unreachable, timed out, a 5xx, an answer that was not the service's, or a bug of the CLI. */
  unavailable: 4,
  /** With `--wait`: the query was still not final when `--timeout` ran out. */
  waitTimeout: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The table as `--help` shows it. */
export const EXIT_CODE_HELP: ReadonlyArray<readonly [ExitCode, string]> = [
  [EXIT.ok, 'done (with --wait: the query SUCCEEDED)'],
  [EXIT.refused, 'refused: the API, the attestation check or the CLI said no; the message names the next step'],
  [EXIT.usage, 'usage or configuration mistake'],
  [EXIT.queryUnsuccessful, 'with --wait: the query ended FAILED, REJECTED, CANCELLED or EXPIRED (still printed on stdout)'],
  [EXIT.unavailable, 'no usable answer: API or worker unreachable, timed out or failing (5xx); retry later'],
  [EXIT.waitTimeout, 'with --wait: the query was not final before --timeout'],
];

/** The exit code for an API error of HTTP status `status`: a server failure is not a refusal. */
export function exitCodeForStatus(status: number): ExitCode {
  return status >= 500 ? EXIT.unavailable : EXIT.refused;
}
