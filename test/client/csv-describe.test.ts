import test from 'ava';
import { describeCsv } from '../../client/sdk/csv-describe.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';

/** The text as a stream of `size`-byte pieces (1 puts every boundary between two chunks). */
function stream(text: string | Uint8Array, size = 1 << 20): ReadableStream<Uint8Array> {
  const bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text;
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

async function types(csv: string): Promise<string[]> {
  return (await describeCsv(stream(csv))).schema.map((c) => c.type);
}

const inference: Array<[string, string[], string]> = [
  ['booleans, any case', ['true', 'FALSE', 'True'], 'BOOLEAN'],
  ['small integers', ['1', '-2', '+3', '0', '2147483647', '-2147483648'], 'INTEGER'],
  ['past 32 bits', ['1', '2147483648'], 'BIGINT'],
  ['below 32 bits', ['-2147483649'], 'BIGINT'],
  ['64-bit bounds', ['9223372036854775807', '-9223372036854775808'], 'BIGINT'],
  // Exact numbers stay exact: plain decimals are DECIMAL sized to hold every value (money keeps its cents).
  ['past 64 bits', ['9223372036854775808'], 'DECIMAL(19,0)'],
  ['money', ['12.50', '3.10', '1000.00'], 'DECIMAL(6,2)'],
  ['decimals and integers', ['1', '2.5', '-0.25', '123'], 'DECIMAL(5,2)'],
  ['signed decimals', ['+0.5', '-0.125'], 'DECIMAL(4,3)'],
  ['38 digits', ['1234567890123456789012345678.0123456789'], 'DECIMAL(38,10)'],
  ['past 38 digits together', ['1234567890123456789012345678901234567.5', '0.12'], 'DOUBLE'],
  ['39 integer digits', ['123456789012345678901234567890123456789'], 'DOUBLE'],
  ['an exponent makes it DOUBLE', ['1', '2.5', '-0.25', '1e3', '6.02E+23'], 'DOUBLE'],
  ['dates', ['2024-01-31', '2024-02-29', '1999-12-31'], 'DATE'],
  ['timestamps', ['2024-01-31 23:59:59', '2024-02-01 00:00:00.123456'], 'TIMESTAMP'],
  ['dates and timestamps', ['2024-01-31', '2024-02-01 10:00:00'], 'TIMESTAMP'],
  ['text', ['abc', 'x y'], 'VARCHAR'],
  ['numbers and text', ['1', 'two'], 'VARCHAR'],
  ['booleans and numbers', ['true', '1'], 'VARCHAR'],
  ['dates and numbers', ['2024-01-01', '5'], 'VARCHAR'],
  ['leading zeros stay text', ['007', '12'], 'VARCHAR'],
  ['not a calendar date', ['2023-02-29'], 'VARCHAR'],
  ['month 13', ['2024-13-01'], 'VARCHAR'],
  ['hour 24', ['2024-01-01 24:00:00'], 'VARCHAR'],
  ['ISO T separator', ['2024-01-01T10:00:00'], 'VARCHAR'],
  ['seven fractional digits', ['2024-01-01 10:00:00.1234567'], 'VARCHAR'],
  ['padded number', [' 1'], 'VARCHAR'],
  ['infinity is not inferred', ['inf', 'NaN'], 'VARCHAR'],
  ['yes/no are text', ['yes', 'no'], 'VARCHAR'],
];
for (const [name, values, expected] of inference) {
  test(`describeCsv: infers ${expected} for ${name}`, async (t) => {
    t.deepEqual(await types(`c\n${values.join('\n')}\n`), [expected]);
  });
}

test('describeCsv: empty cells are NULL and do not widen a type; an all-NULL column is VARCHAR', async (t) => {
  const csv = 'a,b,c\n1,,\n,true,\n3,false,\n';
  const described = await describeCsv(stream(csv));
  t.deepEqual(described.schema, [
    { name: 'a', type: 'INTEGER' },
    { name: 'b', type: 'BOOLEAN' },
    { name: 'c', type: 'VARCHAR' },
  ]);
  t.is(described.rowCount, 3);
});

test('describeCsv: quoted fields hold commas, doubled quotes and line breaks; rows are counted, not lines', async (t) => {
  const csv = 'id,note\r\n1,"a, b"\r\n2,"say ""hi"""\r\n3,"two\nlines"\r\n4,"crlf\r\ninside"\r\n5,plain\r\n';
  const described = await describeCsv(stream(csv));
  t.deepEqual(described.schema, [
    { name: 'id', type: 'INTEGER' },
    { name: 'note', type: 'VARCHAR' },
  ]);
  t.is(described.rowCount, 5);
  t.is(described.bytes, new TextEncoder().encode(csv).byteLength);
});

test('describeCsv: a quoted number is still a number; a quoted empty cell is the empty string, text only', async (t) => {
  t.deepEqual(await types('n,m,o\n"12",1,\n"-3",,""\n'), ['INTEGER', 'INTEGER', 'VARCHAR']);
  t.deepEqual(await types('n\n1\n""\n'), ['VARCHAR']);
});

test('describeCsv: the same answer whatever the chunking, byte by byte included (multi-byte UTF-8 split)', async (t) => {
  const csv = 'name,amount,day\n"Zoë, ""the"" café",1.5,2024-03-01\nÅsa,2,2024-03-02\n"multi\nline ✓",3,\n';
  const whole = await describeCsv(stream(csv));
  for (const size of [1, 2, 3, 7]) t.deepEqual(await describeCsv(stream(csv, size)), whole, `chunks of ${size}`);
  t.deepEqual(
    whole.schema.map((c) => c.type),
    ['VARCHAR', 'DECIMAL(2,1)', 'DATE'],
  );
  t.is(whole.rowCount, 3);
});

test('describeCsv: no final line break, a header alone, and a UTF-8 byte order mark', async (t) => {
  t.is((await describeCsv(stream('a,b\n1,2'))).rowCount, 1);
  const headerOnly = await describeCsv(stream('a,b\n'));
  t.is(headerOnly.rowCount, 0);
  t.deepEqual(
    headerOnly.schema.map((c) => c.type),
    ['VARCHAR', 'VARCHAR'],
  );
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('id\n1\n')]);
  const described = await describeCsv(stream(bom));
  t.deepEqual(described.schema, [{ name: 'id', type: 'INTEGER' }]);
  t.is(described.bytes, bom.byteLength);
});

test('describeCsv: a trailing empty field is a NULL cell of the last column', async (t) => {
  const described = await describeCsv(stream('a,b\n1,\n2,\n'));
  t.deepEqual(
    described.schema.map((c) => c.type),
    ['INTEGER', 'VARCHAR'],
  );
  t.is(described.rowCount, 2);
});

test('describeCsv: many rows are counted in one pass', async (t) => {
  const lines = ['id,value'];
  for (let i = 0; i < 10_000; i++) lines.push(`${i},${i % 3 === 0 ? '' : i * 0.5}`);
  const described = await describeCsv(stream(`${lines.join('\n')}\n`, 4096));
  t.is(described.rowCount, 10_000);
  t.deepEqual(
    described.schema.map((c) => c.type),
    ['INTEGER', 'DECIMAL(5,1)'],
  );
});

test('describeCsv: reports the RFC 4180 dialect it reads', async (t) => {
  t.deepEqual((await describeCsv(stream('a\n1\n'))).csv, { delimiter: ',', quote: '"', escape: '"', header: true });
});

const malformed: Array<[string, string | Uint8Array, ErrorCode]> = [
  ['an empty file', '', 'DATASET_MALFORMED'],
  ['a row with too few fields', 'a,b\n1\n', 'DATASET_MALFORMED'],
  ['a row with too many fields', 'a,b\n1,2,3\n', 'DATASET_MALFORMED'],
  ['an unterminated quote', 'a,b\n1,"open\n2,3\n', 'DATASET_MALFORMED'],
  ['a quote inside an unquoted field', 'a\nab"c\n', 'DATASET_MALFORMED'],
  ['text after a closing quote', 'a\n"ab"c\n', 'DATASET_MALFORMED'],
  ['a bare carriage return', 'a,b\r1,2\n', 'DATASET_MALFORMED'],
  ['an empty line between rows', 'a,b\n1,2\n\n3,4\n', 'DATASET_MALFORMED'],
  ['an empty line at the end', 'a\n1\n\n', 'DATASET_MALFORMED'],
  ['an empty CRLF line', 'a,b\r\n1,2\r\n\r\n', 'DATASET_MALFORMED'],
  ['invalid UTF-8', new Uint8Array([0x61, 0x0a, 0xff, 0xfe, 0x0a]), 'DATASET_MALFORMED'],
  ['a duplicate column name', 'a,A\n1,2\n', 'VALIDATION_FAILED'],
  ['an empty column name', 'a,,c\n1,2,3\n', 'VALIDATION_FAILED'],
  ['a quote in a column name', '"a""b"\n1\n', 'VALIDATION_FAILED'],
  ['a control character in a column name', '"a\tb"\n1\n', 'VALIDATION_FAILED'],
  ['too many columns', `${Array.from({ length: 257 }, (_, i) => `c${i}`).join(',')}\n`, 'VALIDATION_FAILED'],
];
for (const [name, csv, code] of malformed) {
  test(`describeCsv: refuses ${name} with ${code}`, async (t) => {
    const error = await t.throwsAsync(describeCsv(stream(csv)));
    t.true(error instanceof CleanroomError);
    t.is((error as CleanroomError).code, code);
  });
}

test('describeCsv: an error names the physical line it is on', async (t) => {
  const error = await t.throwsAsync(describeCsv(stream('a,b\n"x\ny",1\n1,2,3\n')));
  t.regex(error!.message, /line 4/);
});

test('describeCsv: a failing source fails the description', async (t) => {
  const failing = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('a\n1\n'));
      controller.error(new Error('disk gone'));
    },
  });
  const error = await t.throwsAsync(describeCsv(failing));
  t.is(error!.message, 'disk gone');
});
