// Validates AsyncAPI documents with the official AsyncAPI parser, independently of dealflow's code.
// Usage: node validate.mjs FILE... Prints one JSON line per diagnostic and one verdict line per file on
// stdout, errors and warnings readably on stderr; exits 1 if any file has an error or a warning.
// Several files share one start of Node and the parser.
import { Parser, fromFile } from '@asyncapi/parser';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE...');
  process.exit(2);
}
const SEVERITIES = ['error', 'warning', 'information', 'hint'];
const parser = new Parser();
let allValid = true;
for (const file of files) {
  const { document, diagnostics } = await fromFile(parser, file).parse();
  for (const diagnostic of diagnostics) {
    console.log(JSON.stringify({
      file,
      severity: SEVERITIES[diagnostic.severity],
      code: diagnostic.code,
      message: diagnostic.message,
      path: diagnostic.path.join('/'),
    }));
  }
  const failing = diagnostics.filter((diagnostic) => diagnostic.severity <= 1);
  for (const diagnostic of failing) {
    console.error(`${file}: ${SEVERITIES[diagnostic.severity]} ${diagnostic.code} at ${diagnostic.path.join('/')}: ${diagnostic.message}`);
  }
  const valid = document !== undefined && failing.length === 0;
  allValid &&= valid;
  console.log(JSON.stringify({ file, valid, version: document?.version() ?? null }));
  console.error(valid ? `${file}: valid AsyncAPI ${document.version()}` : `${file}: invalid (${failing.length} errors or warnings)`);
}
process.exit(allValid ? 0 : 1);
