// A local stand-in for GitHub's artifact service, so the real @actions/artifact client can
// upload and download on loopback: Azurite (the Azure Storage emulator) stores the bytes,
// and a small Twirp JSON server hands out Azurite SAS URLs the way the results service does.
// The same server answers the two REST calls the client makes for another run's artifacts
// (`findBy`): the run's artifact list, and the redirect to an artifact's zip.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { json } from 'node:stream/consumers';
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import type { ContainerClient } from '@azure/storage-blob';
import { makeScratchDir, onProcessExit } from './scratch.ts';
import { freePort, portTaken, startServerProcess } from './server-process.ts';

export interface RecordedArtifact {
  id: number;
  name: string;
  size: number;
  /** Hex SHA-256, as uploadArtifact reports it (the client finalizes with `sha256:<hex>`). */
  digest: string;
  expiresAt?: string;
  retentionDays?: number;
}

/** One request the service answered: a Twirp method, or `GET <REST path>`. */
export interface ServiceRequest {
  call: string;
  /** The artifact it was about (by name or id), when it named one. */
  artifact?: string;
}

export interface ArtifactService {
  /** Environment a step needs for @actions/artifact (token, results/API URLs, run identity). */
  readonly env: Record<string, string>;
  /** A token the REST side accepts (`github-token`, for findBy). */
  readonly apiToken: string;
  /** Artifacts finalized so far (and not deleted), as the service recorded them. */
  artifacts(): RecordedArtifact[];
  /** Every request answered so far, in order. */
  requests(): ServiceRequest[];
  /** Storage damage: the artifact's bytes become another artifact's; its recorded digest stays. */
  replaceContent(name: string, withContentOf: string): Promise<void>;
  /** The bytes storage holds for an artifact, exactly as uploaded (the zip). */
  content(name: string): Promise<Buffer>;
  stop(): Promise<void>;
}

// Azurite's well-known development account (public, documented; not a secret).
const ACCOUNT = 'devstoreaccount1';
const CREDENTIAL = new StorageSharedKeyCredential(
  ACCOUNT,
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
);
const CONTAINER = 'actions-results';
const TWIRP_PREFIX = '/twirp/github.actions.results.api.v1.ArtifactService/';
const DAY_MS = 24 * 60 * 60 * 1000;
const REPOSITORY = 'example/owncloud-backup';
const RUN_ID = '1';

interface StoredArtifact {
  id: number;
  name: string;
  jobBackendId: string;
  blobName: string;
  createdAt: Date;
  expiresAt?: string;
  /** Set by FinalizeArtifact; until then the artifact is invisible, as on GitHub. */
  finalized?: { size: number; hash: string };
}

type Json = Record<string, unknown>;
type TwirpCalls = Record<string, (body: Json) => Promise<Json>>;

class TwirpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, msg: string) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

/** The client only decodes this JWT (for the `scp` claim); nobody checks the signature. */
function runtimeToken(runBackendId: string, jobBackendId: string): string {
  const part = (value: Json | string) =>
    Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
  const scp = `Actions.GenericRead:${runBackendId} Actions.Results:${runBackendId}:${jobBackendId}`;
  const exp = Math.floor(Date.now() / 1000) + 6 * 60 * 60;
  return [part({ typ: 'JWT', alg: 'RS256' }), part({ scp, exp }), part('unsigned')].join('.');
}

type Azurite = { container: ContainerClient; stop: () => Promise<void> };

async function startAzurite(): Promise<Azurite> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startAzuriteOn(await freePort());
    } catch (error) {
      if (attempt < 3 && portTaken(error)) continue;
      throw error;
    }
  }
}

async function startAzuriteOn(port: number): Promise<Azurite> {
  const scratch = makeScratchDir('azurite');
  const script = createRequire(import.meta.url).resolve('azurite/dist/src/blob/main.js');
  // One try per call: start-up polling retries by itself, and on loopback a failure is real.
  const container = new BlobServiceClient(`http://127.0.0.1:${port}/${ACCOUNT}`, CREDENTIAL, {
    retryOptions: { maxTries: 1 },
  }).getContainerClient(CONTAINER);
  const server = await startServerProcess({
    name: 'Azurite',
    argv: [
      process.execPath,
      // Names the scratch dir in the command line, where the leak check looks for servers.
      `--diagnostic-dir=${scratch.path}`,
      script,
      ...['--blobHost', '127.0.0.1', '--blobPort', String(port), '--inMemoryPersistence'],
      ...['--disableTelemetry', '--skipApiVersionCheck', '--loose', '--silent'],
    ],
    logPath: join(scratch.path, 'azurite.log'),
    stopSignal: 'SIGTERM',
    // Ready once it serves requests; the container is the first thing we need anyway.
    ready: () => container.createIfNotExists().then(() => true),
  }).catch((error: unknown) => {
    scratch.remove();
    throw error;
  });
  return {
    container,
    async stop() {
      await server.stop();
      scratch.remove();
    },
  };
}

function signedUrl(container: ContainerClient, blobName: string, permissions: string): string {
  // The client names a raw (skipArchive) download after Content-Disposition, as GitHub sends it.
  const fileName = blobName.slice(blobName.lastIndexOf('/') + 1);
  const sas = generateBlobSASQueryParameters(
    {
      containerName: CONTAINER,
      blobName,
      permissions: BlobSASPermissions.parse(permissions),
      expiresOn: new Date(Date.now() + 60 * 60 * 1000),
      contentDisposition: `attachment; filename*=UTF-8''${encodeURIComponent(fileName)}`,
    },
    CREDENTIAL,
  );
  return `${container.getBlockBlobClient(blobName).url}?${sas.toString()}`;
}

function text(body: Json, field: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value === '')
    throw new TwirpError(400, 'invalid_argument', `${field} is required`);
  return value;
}

function createArtifactStore(container: ContainerClient, runBackendId: string) {
  const stored: StoredArtifact[] = [];
  let nextId = 1;

  // Jobs of one run share its artifacts; other runs' are out of this token's reach.
  const checkRun = (body: Json) => {
    if (text(body, 'workflow_run_backend_id') !== runBackendId)
      throw new TwirpError(403, 'permission_denied', 'workflow run does not match the token');
  };
  const nameIn = (body: Json) => {
    checkRun(body);
    return text(body, 'name');
  };
  const finalized = (name: string) => {
    const found = stored.find((a) => a.finalized && a.name === name);
    if (!found) throw new TwirpError(404, 'not_found', `artifact ${name} not found`);
    return found;
  };
  const blobOf = (artifact: StoredArtifact) => container.getBlockBlobClient(artifact.blobName);

  const calls: TwirpCalls = {
    async CreateArtifact(body) {
      const name = nameIn(body);
      const taken = 'an artifact with this name already exists on the workflow run';
      if (stored.some((a) => a.name === name)) throw new TwirpError(409, 'already_exists', taken);
      const id = nextId++;
      const blobName = `${runBackendId}/${id}/${name}`;
      const expiresAt = typeof body.expires_at === 'string' ? body.expires_at : undefined;
      const jobBackendId = text(body, 'workflow_job_run_backend_id');
      stored.push({ id, name, jobBackendId, blobName, createdAt: new Date(), expiresAt });
      return { ok: true, signed_upload_url: signedUrl(container, blobName, 'rcw') };
    },
    async FinalizeArtifact(body) {
      const name = nameIn(body);
      const artifact = stored.find((a) => !a.finalized && a.name === name);
      if (!artifact) throw new TwirpError(404, 'not_found', `no pending artifact ${name}`);
      // Record only what storage holds: a size the blob does not have is a client bug.
      const size = Number(body.size ?? 0);
      const blob = await blobOf(artifact)
        .getProperties()
        .catch(() => undefined);
      if (blob?.contentLength !== size)
        throw new TwirpError(400, 'failed_precondition', `size ${size} is not what was stored`);
      artifact.finalized = { size, hash: typeof body.hash === 'string' ? body.hash : '' };
      return { ok: true, artifact_id: String(artifact.id) };
    },
    async ListArtifacts(body) {
      checkRun(body);
      const { name_filter: byName, id_filter: byId } = body;
      const artifacts = stored.filter(
        (a) =>
          a.finalized &&
          (byName === undefined || byName === a.name) &&
          (byId === undefined || Number(byId) === a.id),
      );
      return {
        artifacts: artifacts.map((a) => ({
          workflow_run_backend_id: runBackendId,
          workflow_job_run_backend_id: a.jobBackendId,
          database_id: String(a.id),
          name: a.name,
          size: String(a.finalized?.size),
          created_at: a.createdAt.toISOString(),
          digest: a.finalized?.hash,
        })),
      };
    },
    async GetSignedArtifactURL(body) {
      const artifact = finalized(nameIn(body));
      return { signed_url: signedUrl(container, artifact.blobName, 'r') };
    },
    async DeleteArtifact(body) {
      const artifact = finalized(nameIn(body));
      await blobOf(artifact).deleteIfExists();
      stored.splice(stored.indexOf(artifact), 1);
      return { ok: true, artifact_id: String(artifact.id) };
    },
  };

  const recorded = (): RecordedArtifact[] =>
    stored.flatMap(({ id, name, createdAt, expiresAt, finalized }) => {
      if (!finalized) return [];
      const days = expiresAt && (Date.parse(expiresAt) - createdAt.getTime()) / DAY_MS;
      const digest = finalized.hash.replace(/^sha256:/, '');
      const retentionDays = typeof days === 'number' ? Math.round(days) : undefined;
      return [{ id, name, size: finalized.size, digest, expiresAt, retentionDays }];
    });

  const rest = async (path: string, query: URLSearchParams, repository: string) => {
    const list = /^\/repos\/([^/]+\/[^/]+)\/actions\/runs\/(\d+)\/artifacts$/.exec(path);
    const zip = /^\/repos\/([^/]+\/[^/]+)\/actions\/artifacts\/(\d+)\/zip$/.exec(path);
    if (list && list[1] === repository) {
      // This service holds one run: any other run id has no artifacts.
      const name = query.get('name');
      const artifacts = stored.filter(
        (a) => a.finalized && list[2] === RUN_ID && (name === null || a.name === name),
      );
      return {
        status: 200,
        body: {
          total_count: artifacts.length,
          artifacts: artifacts.map((a) => ({
            id: a.id,
            name: a.name,
            size_in_bytes: a.finalized?.size,
            created_at: a.createdAt.toISOString(),
            expired: false,
            digest: a.finalized?.hash,
          })),
        },
      };
    }
    if (zip && zip[1] === repository) {
      const artifact = stored.find((a) => a.finalized && a.id === Number(zip[2]));
      if (artifact) return { status: 302, location: signedUrl(container, artifact.blobName, 'r') };
    }
    return { status: 404, body: { message: 'Not Found' } };
  };

  const replaceContent = async (name: string, withContentOf: string) => {
    const from = await blobOf(finalized(withContentOf)).downloadToBuffer();
    await blobOf(finalized(name)).uploadData(from, {
      blobHTTPHeaders: { blobContentType: 'application/zip' },
    });
  };

  const content = (name: string) => blobOf(finalized(name)).downloadToBuffer();

  return { calls, recorded, rest, replaceContent, content };
}

async function readJson(request: IncomingMessage): Promise<Json> {
  // Malformed input is a 400: a 500 would make the client retry it with back-off.
  const parsed: unknown = await json(request).catch(() => undefined);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new TwirpError(400, 'malformed', 'request body is not a JSON object');
  return parsed as Json;
}

function reply(response: ServerResponse, status: number, body: Json): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

type RestCalls = (
  path: string,
  query: URLSearchParams,
  repository: string,
) => Promise<{ status: number; body?: Json; location?: string }>;

function twirpServer(
  token: string,
  apiToken: string,
  calls: TwirpCalls,
  rest: RestCalls,
  log: ServiceRequest[],
): Server {
  return createServer((request, response) => {
    const handle = async () => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      // Every request is logged, answered or refused.
      const entry: ServiceRequest = {
        call: url.pathname.startsWith(TWIRP_PREFIX)
          ? url.pathname.slice(TWIRP_PREFIX.length)
          : `${request.method} ${url.pathname}`,
      };
      log.push(entry);
      if (request.method === 'GET' && url.pathname.startsWith('/repos/')) {
        const id = /artifacts\/(\d+)/.exec(url.pathname)?.[1];
        if (id) entry.artifact = id;
        if (request.headers.authorization?.replace(/^(token|Bearer) /, '') !== apiToken) {
          reply(response, 401, { message: 'Bad credentials' });
          return;
        }
        const answer = await rest(url.pathname, url.searchParams, REPOSITORY);
        if (answer.location) {
          response.writeHead(answer.status, { location: answer.location });
          response.end();
        } else reply(response, answer.status, answer.body ?? {});
        return;
      }
      const method =
        request.url?.startsWith(TWIRP_PREFIX) && request.url.slice(TWIRP_PREFIX.length);
      const call = method && Object.hasOwn(calls, method) ? calls[method] : undefined;
      if (request.method !== 'POST' || !call)
        throw new TwirpError(404, 'bad_route', `no such method: ${request.method} ${request.url}`);
      if (request.headers.authorization !== `Bearer ${token}`)
        throw new TwirpError(401, 'unauthenticated', 'invalid runtime token');
      const body = await readJson(request);
      const named = body.name ?? body.id_filter;
      if (named !== undefined) entry.artifact = String(named);
      reply(response, 200, await call(body));
    };
    handle().catch((error: unknown) => {
      if (error instanceof TwirpError)
        reply(response, error.status, { code: error.code, msg: error.message });
      else reply(response, 500, { code: 'internal', msg: String(error) });
    });
  });
}

export async function startArtifactService(): Promise<ArtifactService> {
  const azurite = await startAzurite();
  const runBackendId = randomUUID();
  const token = runtimeToken(runBackendId, randomUUID());
  const store = createArtifactStore(azurite.container, runBackendId);
  const apiToken = `ghs_${randomUUID().replaceAll('-', '')}`;
  const log: ServiceRequest[] = [];
  const server = twirpServer(token, apiToken, store.calls, store.rest, log);
  const closeServer = onProcessExit(() => server.close().closeAllConnections());
  const listening = once(server.listen(0, '127.0.0.1'), 'listening');
  await listening.catch(async (error: unknown) => {
    closeServer();
    await azurite.stop();
    throw error;
  });
  const { port } = server.address() as AddressInfo;

  let stopping: Promise<void> | undefined;
  return {
    env: {
      ACTIONS_RUNTIME_TOKEN: token,
      ACTIONS_RESULTS_URL: `http://127.0.0.1:${port}/`,
      // The client refuses hosts other than github.com, *.ghe.com and *.localhost (GHES).
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_API_URL: `http://127.0.0.1:${port}`,
      GITHUB_REPOSITORY: REPOSITORY,
      GITHUB_RUN_ID: RUN_ID,
      GITHUB_RUN_ATTEMPT: '1',
      // The repository's maximum retention; the client clamps retentionDays to it.
      GITHUB_RETENTION_DAYS: '90',
    },
    apiToken,
    artifacts: store.recorded,
    requests: () => [...log],
    replaceContent: store.replaceContent,
    content: store.content,
    stop() {
      stopping ??= (async () => {
        closeServer();
        await azurite.stop();
      })();
      return stopping;
    },
  };
}
