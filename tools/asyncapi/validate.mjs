// Validates an AsyncAPI document with the official AsyncAPI parser (independent of dealflow's code).
// Usage: node validate.mjs FILE. Prints every diagnostic as JSON lines; exits 1 on any error or warning.
import { Parser, fromFile } from '@asyncapi/parser';

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node validate.mjs FILE');
  process.exit(2);
}
const SEVERITIES = ['error', 'warning', 'information', 'hint'];
const { document, diagnostics } = await fromFile(new Parser(), file).parse();
for (const diagnostic of diagnostics) {
  console.log(JSON.stringify({
    severity: SEVERITIES[diagnostic.severity],
    code: diagnostic.code,
    message: diagnostic.message,
    path: diagnostic.path.join('/'),
  }));
}
const failing = diagnostics.filter((diagnostic) => diagnostic.severity <= 1);
if (document === undefined || failing.length > 0) {
  console.error(`${file}: invalid (${failing.length} errors or warnings)`);
  process.exit(1);
}
console.error(`${file}: valid AsyncAPI ${document.version()}`);
