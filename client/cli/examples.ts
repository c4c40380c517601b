/**
 * The `Examples:` block of each command's `--help`, by command path. Kept in one table so that
 * every command has one (`test/client/cli-help.test.ts` checks) and they read as one tour.
 * `S` is a session id and `Q` a query id, as `session create` and `query propose` print them.
 */
export const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  login: ['cleanroom login --email alice@example.com        # local stack: its dev identity provider', 'cleanroom login --token "$(gcloud auth print-identity-token)"'],
  logout: ['cleanroom logout'],
  token: ['curl -s localhost:3000/api/tee/sessions -H "authorization: Bearer $(cleanroom token)"'],
  'session create': ['cleanroom session create --name overlap --participant bob@example.com', 'cleanroom session create --name solo --approval none --json | jq -r .id'],
  'session list': ['cleanroom session list', 'cleanroom session list --status ACTIVE --json'],
  'session show': ['cleanroom session show S'],
  'session close': ['cleanroom session close S'],
  'session join': ['cleanroom session join S        # every participant, before uploading or being a recipient'],
  'participant add': ['cleanroom participant add S carol@example.com'],
  'participant remove': ['cleanroom participant remove S carol@example.com'],
  'dataset upload': [
    'cleanroom dataset upload S customers.csv --table customers --allow-insecure-dev',
    'cleanroom dataset upload S sales.tsv --format csv --table sales --delimiter tab',
    'cleanroom dataset upload S events.parquet --table events',
  ],
  'dataset list': ['cleanroom dataset list S'],
  'query propose': [
    'cleanroom query propose S --sql "SELECT count(*) AS n FROM customers"',
    'cleanroom query propose S --sql-file overlap.sql --recipient alice@example.com --recipient bob@example.com',
    'cleanroom query propose S --sql "SELECT 40 + 2 AS answer" --wait     # exit 0 only if it SUCCEEDED',
  ],
  'query list': ['cleanroom query list S', 'cleanroom query list S --status PENDING_APPROVAL'],
  'query show': ['cleanroom query show S Q', 'cleanroom query show S Q --wait --timeout 120'],
  'query approve': ['cleanroom query approve S Q'],
  'query reject': ['cleanroom query reject S Q'],
  'query cancel': ['cleanroom query cancel S Q'],
  'result get': ['cleanroom result get S Q --allow-insecure-dev', 'cleanroom result get S Q --out result.csv'],
  audit: ['cleanroom audit S', 'cleanroom audit S --json | jq ".entries[].action"'],
  attest: ['cleanroom attest --allow-insecure-dev        # local stack only: the dev attester proves nothing', 'cleanroom attest --worker https://worker.example.com --expect-digest sha256:...'],
};

/** The examples of the command at `path` (empty when it has none). */
export function examplesOf(path: readonly string[]): readonly string[] {
  return EXAMPLES[path.join(' ')] ?? [];
}
