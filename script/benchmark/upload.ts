// The uploads the comparison variants make, in a process of their own so that its peak
// memory can be read: the real @actions/artifact client, against whatever artifact service
// the environment (ACTIONS_RUNTIME_TOKEN, ACTIONS_RESULTS_URL) names.
//   node upload.ts raw FILE...   one artifact per file, the file as it is (skipArchive)
//   node upload.ts zip NAME DIR  every file under DIR in one zip artifact, as
//                                actions/upload-artifact makes it (compression level 6,
//                                hidden files included so the data dir stays usable; the
//                                few names the client refuses, such as `*?[glob].txt`, left
//                                out, as the action would fail on them)
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';

/** Characters @actions/artifact refuses in a zip's member names. */
const REFUSED = /[":<>|*?\r\n]/;

const [mode, ...rest] = process.argv.slice(2);
const client = new DefaultArtifactClient();
if (mode === 'raw') {
  for (const file of rest)
    await client.uploadArtifact(basename(file), [file], dirname(file), { skipArchive: true });
} else if (mode === 'zip' && rest.length === 2) {
  const [name, dir] = rest as [string, string];
  const files = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && !REFUSED.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name));
  await client.uploadArtifact(name, files, dir, { compressionLevel: 6 });
} else {
  console.error('usage: upload.ts raw FILE... | upload.ts zip NAME DIR');
  process.exit(2);
}
