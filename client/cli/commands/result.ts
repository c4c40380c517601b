import { importEncryptionKey } from '../../sdk/participant-keys.ts';
import { getResult, resultToCsv, type VerifiedResult } from '../../sdk/result.ts';
import { ATTESTATION_HELP, ATTESTATION_OPTIONS, attestationChoice, explainRefusal, insecureWarning } from '../attestation-options.ts';
import { JSON_OPTION, parseCommandArgs, type Command } from '../command.ts';
import { writePrivateFile } from '../files.ts';
import { currentCredentials } from '../identity.ts';
import { participantKeysOf, requireKeys } from '../key-store.ts';
import { safe } from '../output.ts';

/** `cleanroom result get SESSION QUERY`. */
export const resultGet: Command = {
  path: ['result', 'get'],
  usage: 'cleanroom result get SESSION QUERY [--out FILE] [--expect-digest DIGEST ...] [--allow-insecure-dev] [--json]',
  summary: "Fetch a query's sealed result, verify the worker's receipt and decrypt it here with your session key",
  options: [['--out FILE', 'write the result to FILE (mode 0600) instead of stdout'], ...ATTESTATION_HELP, ['--json', 'the result as JSON {columns, rows, receipt} instead of CSV']],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION, ...ATTESTATION_OPTIONS, out: { type: 'string' } }, ['SESSION', 'QUERY']);
    const [sessionId, queryId] = positionals as [string, string];
    const choice = attestationChoice(this, ctx, values);
    const credentials = await currentCredentials({ api: ctx.config.api, home: ctx.config.home, fetch: ctx.fetch, now: ctx.now });
    const keys = await requireKeys(ctx.config.home, sessionId, { api: ctx.config.api, email: credentials.email });
    const encryptionPrivateKey = await importEncryptionKey(participantKeysOf(keys));

    let result: VerifiedResult;
    try {
      result = await getResult({ api: ctx.api, sessionId, queryId, encryptionPrivateKey, attestation: choice, fetch: ctx.fetch });
    } catch (error) {
      throw explainRefusal(error, choice);
    }
    if (result.insecureDev) ctx.io.stderr(insecureWarning(result.digestPinned));
    const { receipt } = result;
    const text = values.json ? `${JSON.stringify({ columns: result.columns, rows: result.rows, receipt }, null, 2)}\n` : resultToCsv(result);
    if (!values.json) {
      // On stderr, so stdout holds the CSV alone.
      ctx.io.stderr(
        `receipt verified: query ${safe(receipt.query_id)} attempt ${receipt.attempt}, ${result.rows.length} rows, ` +
          `result sha256 ${receipt.result_sha256}, worker image ${safe(receipt.image_digest)}\n`,
      );
    }
    if (values.out !== undefined) {
      await writePrivateFile(values.out, text);
      ctx.io.stderr(`wrote ${result.rows.length} rows to ${values.out}\n`);
    } else ctx.io.stdout(text);
  },
};
