/** Pushes to a plain-HTTP registry (the e2e upstream) the way registry clients do. */
import { sha256 } from '../../fixtures/images.js';
import type { DockerRegistry } from './registry.js';

/** A monolithic blob upload (POST, then PUT with the digest). */
export async function pushBlob(registry: DockerRegistry, repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const start = await fetch(`${registry.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await start.arrayBuffer();
  const location = start.headers.get('location');
  if (start.status !== 202 || !location) throw new Error(`blob upload start for ${repo}: ${start.status}`);
  const url = new URL(location, registry.url);
  url.searchParams.set('digest', digest);
  const put = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(bytes) });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`blob upload of ${digest} to ${repo}: ${put.status} ${text}`);
  return digest;
}

/** An OCI image of one layer at `repo:tag`; returns the manifest's digest and bytes. */
export async function pushImage(
  registry: DockerRegistry,
  repo: string,
  tag: string,
  layer: Buffer,
): Promise<{ digest: string; bytes: Buffer }> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }));
  const configDigest = await pushBlob(registry, repo, config);
  const layerDigest = await pushBlob(registry, repo, layer);
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
    }),
  );
  const digest = await pushManifest(registry, repo, tag, bytes, 'application/vnd.oci.image.manifest.v1+json');
  return { digest, bytes };
}

/** PUT of a manifest's bytes at `reference` (a tag or its digest); returns its digest. */
export async function pushManifest(
  registry: DockerRegistry,
  repo: string,
  reference: string,
  bytes: Buffer,
  mediaType: string,
): Promise<string> {
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body: new Uint8Array(bytes),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`manifest PUT ${repo}:${reference}: ${res.status} ${text}`);
  return sha256(bytes);
}
