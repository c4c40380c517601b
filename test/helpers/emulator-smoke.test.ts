import test from 'ava';
import { startFirestoreEmulator } from './firestore-emulator.ts';

test('firestore emulator: starts on loopback, answers Ok, and stops', async (t) => {
  const emulator = await startFirestoreEmulator();
  const res = await fetch(`http://${emulator.host}/`);
  t.is((await res.text()).trim(), 'Ok');
  await emulator.stop();
  await t.throwsAsync(fetch(`http://${emulator.host}/`));
});
