import type { RepositoryRef, Storage } from '../storage/storage.js';

/**
 * What `/v2/_catalog` lists: the repositories this cache holds tag records for. Never asks an
 * upstream (a mirror cannot list an upstream's repositories); naming and paging are the route's job.
 */
export class CatalogService {
  constructor(
    private readonly storage: Storage,
    /** Waits for tag records still being written behind responses, so the list sees every pull before it. */
    private readonly written: () => Promise<void> = async () => undefined,
  ) {}

  async repositories(): Promise<RepositoryRef[]> {
    await this.written();
    const all: RepositoryRef[] = [];
    for await (const repo of this.storage.listRepositories()) all.push(repo);
    return all;
  }
}
