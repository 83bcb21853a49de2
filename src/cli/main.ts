#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../config/upstreams.js';
import { VERSION } from '../version.js';
import { LOG_LEVELS } from '../log.js';
import { DOCKER_HUB } from '../oci/docker-hub.js';
import { parseListenAddress } from './listen-address.js';
import { registerAdminCommands } from './admin/index.js';
import { addLifecycleOptions } from './lifecycle-options.js';
import { addDownloadOptions } from './download-options.js';
import { addConnectionOptions } from './connection-options.js';
import { addClusterOptions } from './cluster-options.js';
import type { GlobalOptions } from './global-options.js';
import { runServer } from './serve.js';
import { redactUrlCredentials } from './redact.js';
import { registerClientConfig } from './client-config.js';
import type { StorageOptions } from '../storage/create-storage.js';
import { errorText } from '../error-text.js';

/** Flags compatible with the Rust oci-registry, each also read from an environment variable. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('oci-registry')
    .description('A pull-through caching mirror for container registries (OCI distribution pull API).')
    .version(VERSION)
    // Parse errors become CommanderErrors that main() prints as one line and exits 2 (set before the
    // subcommands are added: they inherit both settings).
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .addOption(new Option('--listen <host:port>', 'address to serve on').env('LISTEN').default('0.0.0.0:8080').argParser(listenArg))
    .addOption(
      new Option('--upstream-config-file <file>', 'YAML list of upstream registries (see example.yaml)').env('UPSTREAM_CONFIG_FILE'),
    )
    .addOption(
      new Option('--default-namespace <ns>', 'namespace for requests that name none (Docker registry-mirrors)')
        .env('DEFAULT_NAMESPACE')
        .default(DOCKER_HUB),
    )
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info').choices(LOG_LEVELS))
    .addOption(
      new Option('--allow-unlisted-namespaces', 'with a config file, also mirror namespaces it does not list (public addresses only)')
        .env('ALLOW_UNLISTED_NAMESPACES')
        .default(false),
    )
    .addOption(
      new Option('--verify-cache', 'at start, rehash every cached blob and delete corrupt ones before serving')
        .env('VERIFY_CACHE')
        .default(false),
    )
    .addOption(
      new Option('--check-cache-digest', 'rehash cached blobs while serving them; drop any that fail')
        .env('CHECK_CACHE_DIGEST')
        .default(false),
    )
    .addOption(
      new Option('--spool-dir <dir>', 'where blobs are spooled while stored in S3 (default: the system temp dir)').env('SPOOL_DIR'),
    )
    .addOption(
      new Option('--metrics-listen <host:port>', 'serve /metrics on this separate address instead of --listen')
        .env('METRICS_LISTEN')
        .argParser(listenArg),
    )
    .addOption(
      new Option('--shutdown-grace-period <duration>', 'how long SIGTERM waits for running requests and downloads')
        .env('SHUTDOWN_GRACE_PERIOD')
        .default('30s'),
    )
    .addOption(new Option('--no-status-page', 'do not serve the status page at / (and /status.json)').env('NO_STATUS_PAGE'))
    .addOption(
      new Option('--preload <file>', 'at start, prefetch the images listed in this file (one per line) in the background').env('PRELOAD'),
    );

  addLifecycleOptions(program);
  addDownloadOptions(program);
  addConnectionOptions(program);
  addClusterOptions(program);

  const globals = () => program.opts() as GlobalOptions;
  const serve = (storage: StorageOptions) => runServer({ ...globals(), storage });

  const filesystem = program
    .command('filesystem')
    .description('keep the cache in a local directory (then serve, or run an admin command on it)')
    .addOption(new Option('--root <dir>', 'cache directory').env('FILESYSTEM_ROOT').makeOptionMandatory())
    .action(async (opts: FilesystemFlags) => serve(filesystemStorage(opts)));
  registerAdminCommands(filesystem, () => ({ global: globals(), storage: filesystemStorage(filesystem.opts() as FilesystemFlags) }));

  const s3 = program
    .command('s3')
    .description('keep the cache in an S3 bucket (AWS or S3-compatible)')
    .addOption(new Option('--bucket <name>', 'bucket').env('S3_BUCKET').makeOptionMandatory())
    .addOption(new Option('--region <region>', 'region').env('S3_REGION').default('us-east-1'))
    .addOption(new Option('--host <url>', 'endpoint URL of an S3-compatible store (default: AWS)').env('S3_HOST'))
    .addOption(new Option('--access-key <key>', 'access key id (default: the AWS SDK credential chain)').env('S3_ACCESS_KEY'))
    .addOption(new Option('--secret-key <key>', 'secret access key').env('S3_SECRET_KEY'))
    .addOption(new Option('--prefix <prefix>', 'key prefix inside the bucket').env('S3_PREFIX'))
    .addOption(new Option('--path-style', 'path-style bucket URLs (default when --host is given)').env('S3_PATH_STYLE'))
    .addOption(new Option('--redirect', 'answer GETs of cached blobs with a 307 to a presigned S3 URL (5 min expiry)').env('S3_REDIRECT'))
    .action(async (opts: S3Flags) => serve(s3Storage(opts)));
  registerAdminCommands(s3, () => ({ global: globals(), storage: s3Storage(s3.opts() as S3Flags) }));
  registerClientConfig(program);
  // Without a storage subcommand there is nothing to serve: say so in one line instead of a help dump.
  // Set after the subcommands (they keep refusing stray arguments and options): whatever is left over
  // reaches this action, which names the unknown option or command the way commander would.
  program
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action((_opts: unknown, command: Command) => {
      const first = command.args[0];
      if (first === undefined) {
        throw new ConfigError(
          'name a storage subcommand: oci-registry [global flags] filesystem --root DIR, or s3 --bucket NAME (--help lists every command)',
        );
      }
      // commander's own messages, with its "Did you mean" suggestion (methods missing from its typings).
      const internals = command as unknown as { unknownOption?(flag: string): void; unknownCommand?(): void };
      command.allowUnknownOption(false);
      if (first.startsWith('-')) internals.unknownOption?.(first);
      else internals.unknownCommand?.();
      throw new ConfigError(first.startsWith('-') ? `unknown option '${first}'` : `unknown command '${first}'`);
    });
  return program;
}

interface FilesystemFlags {
  root: string;
}

interface S3Flags {
  bucket: string;
  region: string;
  host?: string;
  accessKey?: string;
  secretKey?: string;
  prefix?: string;
  pathStyle?: boolean;
  redirect?: boolean;
}

function filesystemStorage(opts: FilesystemFlags): StorageOptions {
  return { kind: 'filesystem', root: opts.root };
}

function s3Storage(opts: S3Flags): StorageOptions {
  if ((opts.accessKey === undefined) !== (opts.secretKey === undefined)) {
    throw new ConfigError('s3: --access-key and --secret-key must be given together');
  }
  return {
    kind: 's3',
    bucket: opts.bucket,
    region: opts.region,
    endpoint: opts.host,
    accessKeyId: opts.accessKey,
    secretAccessKey: opts.secretKey,
    prefix: opts.prefix,
    forcePathStyle: opts.pathStyle,
    redirect: opts.redirect,
  };
}

function listenArg(value: string): string {
  if (!parseListenAddress(value)) throw new InvalidArgumentError('expected HOST:PORT, e.g. 0.0.0.0:8080');
  return value;
}

/** The exit status and stderr lines of an error that ends the CLI (2: usage or configuration). */
export function describeFailure(e: unknown): { code: number; lines: string[] } {
  if (e instanceof CommanderError) {
    // --help and --version end this way too (status 0, already printed); so does help shown for a
    // command group without a subcommand (status 1, already printed to stderr).
    if (e.exitCode === 0) return { code: 0, lines: [] };
    if (e.code === 'commander.help' || e.code === 'commander.helpDisplayed') return { code: 2, lines: [] };
    const message = e.message
      .replace(/^error: /, '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .join(' ');
    return { code: 2, lines: [`${message} (run with --help for usage)`] };
  }
  // A configuration mistake: one line per problem, no stack trace.
  if (e instanceof ConfigError) return { code: 2, lines: [...e.problems] };
  return { code: 1, lines: [errorText(e)] };
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (e) {
    const { code, lines } = describeFailure(e);
    for (const line of lines) process.stderr.write(`oci-registry: ${redactUrlCredentials(line)}\n`);
    process.exit(code);
  }
}

void main();
