// The S3 server process of the restic harness: s3rver (a filesystem-backed S3 server) on
// HTTPS, holding one bucket, that answers only requests signed (AWS Signature Version 4,
// Authorization header) with the one access key it was given.
//
// s3rver alone is not enough for that: it takes any request without credentials, and of a
// V4-signed request it checks only that the access key id exists, never the signature. So
// this process checks the signature itself before s3rver sees the request. It must be
// HTTPS: over plain HTTP the S3 client in restic (minio-go) sends every upload in the
// `aws-chunked` streaming encoding, which s3rver stores as it came, chunk headers included.
//
//   node s3-server-main.ts --directory D --port P --bucket B --tls-key K --tls-cert C
//                          --credentials-file F     (F: `ACCESS_KEY_ID:SECRET`, mode 0600)
import { createHmac, createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

interface KoaContext {
  method: string;
  /** The request line's target as sent: path and query still percent-encoded. */
  url: string;
  req: { headers: Record<string, string | string[] | undefined> };
  status: number;
  type: string;
  body: unknown;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  middleware: Middleware[];
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

const { values } = parseArgs({
  options: {
    directory: { type: 'string' },
    port: { type: 'string' },
    bucket: { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-cert': { type: 'string' },
    'credentials-file': { type: 'string' },
  },
  strict: true,
});
const [accessKeyId, ...rest] = readFileSync(values['credentials-file']!, 'utf8').trim().split(':');
const secretAccessKey = rest.join(':');

/** RFC 3986 encoding, as Signature V4 wants it (encodeURIComponent leaves !'()* alone). */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function canonicalQuery(query: string): string {
  return query
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const [name, ...value] = pair.split('=');
      const decode = (s: string) => decodeURIComponent(s.replaceAll('+', ' '));
      return [uriEncode(decode(name!)), uriEncode(decode(value.join('=')))] as const;
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** Why this request is refused, or undefined when its signature is the one the secret gives. */
function signatureProblem(ctx: KoaContext): { code: string; message: string } | undefined {
  const header = (name: string) => {
    const value = ctx.req.headers[name];
    return Array.isArray(value) ? value.join(',') : value;
  };
  const authorization = header('authorization');
  if (!authorization)
    return { code: 'AccessDenied', message: 'Anonymous requests are refused: sign the request.' };
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/,]+)\/(\d{8})\/([^/,]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(
      authorization,
    );
  if (!match)
    return {
      code: 'AccessDenied',
      message: 'Only AWS Signature Version 4 in the Authorization header is accepted.',
    };
  const [, keyId, date, region, signedHeaders, signature] = match;
  if (keyId !== accessKeyId)
    return {
      code: 'InvalidAccessKeyId',
      message: 'The AWS Access Key Id you provided does not exist in our records.',
    };
  const amzDate = header('x-amz-date');
  const payloadHash = header('x-amz-content-sha256');
  if (!amzDate?.startsWith(date!) || !payloadHash)
    return { code: 'AccessDenied', message: 'x-amz-date and x-amz-content-sha256 are required.' };

  const [path, query = ''] = ctx.url.split(/\?(.*)/s);
  const headers = signedHeaders!.split(';');
  const canonicalRequest = [
    ctx.method,
    path,
    canonicalQuery(query),
    ...headers.map((name) => `${name}:${(header(name) ?? '').trim().replace(/ +/g, ' ')}`),
    '',
    signedHeaders,
    payloadHash,
  ].join('\n');
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    scope,
    createHash('sha256').update(canonicalRequest, 'utf8').digest('hex'),
  ].join('\n');
  let key = hmac(`AWS4${secretAccessKey}`, date!);
  for (const part of [region!, 's3', 'aws4_request']) key = hmac(key, part);
  const expected = createHmac('sha256', key).update(stringToSign, 'utf8').digest();
  if (!timingSafeEqual(expected, Buffer.from(signature!, 'hex')))
    return {
      code: 'SignatureDoesNotMatch',
      message: 'The request signature we calculated does not match the signature you provided.',
    };
  return undefined;
}

const requireCjs = createRequire(import.meta.url);
const S3rver = requireCjs('s3rver') as new (options: object) => S3rverInstance;
// s3rver looks the key id up in its own registry too: only ours is there.
const { DUMMY_ACCOUNT } = requireCjs('s3rver/lib/models/account.js') as {
  DUMMY_ACCOUNT: {
    revokeAccessKey(id: string): void;
    createKeyPair(id: string, secret: string): void;
  };
};
DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
DUMMY_ACCOUNT.createKeyPair(accessKeyId!, secretAccessKey);
const server = new S3rver({
  directory: values.directory,
  address: '127.0.0.1',
  port: Number(values.port),
  key: readFileSync(values['tls-key']!),
  cert: readFileSync(values['tls-cert']!),
  silent: true,
  vhostBuckets: false,
  configureBuckets: [{ name: values.bucket, configs: [] }],
});
// First of all middleware: nothing unsigned reaches s3rver.
server.middleware.unshift(async (ctx, next) => {
  const problem = signatureProblem(ctx);
  if (!problem) return next();
  ctx.status = 403;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${problem.code}</Code><Message>${problem.message}</Message></Error>`;
});
await server.run();
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.once(signal, () => void server.close().then(() => process.exit(0)));
