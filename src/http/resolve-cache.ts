import type { ResolvedRepository, ResolveInput, Resolver } from '../resolve/resolver.js';

/** Distinct names kept per namespace choice; at the limit the map starts over (clients choose names). */
const MAX_NAMES = 4096;

/**
 * The resolver's answers for the names clients pull, kept: the configuration does not change while the
 * server runs, so a name resolves the same way every time. Only successes are kept (a refusal is
 * computed each time); requests naming their namespace with `X-Registry` are not kept (rare).
 * Callers must not change a returned resolution: it is shared by every request for the name.
 */
export class ResolveCache {
  /** `?ns=` value (or '' for none) -> name -> resolution. */
  private readonly byNs = new Map<string, Map<string, ResolvedRepository>>();
  private size = 0;

  constructor(private readonly resolver: Pick<Resolver, 'resolve'>) {}

  resolve(input: ResolveInput): ResolvedRepository {
    // An empty `ns` is refused by the resolver; '' stands for "no ns" here.
    if (input.registryHeader !== undefined || input.ns === '') return this.resolver.resolve(input);
    const nsKey = input.ns ?? '';
    const hit = this.byNs.get(nsKey)?.get(input.name);
    if (hit !== undefined) return hit;
    const resolved = this.resolver.resolve(input);
    if (this.size >= MAX_NAMES) {
      this.byNs.clear();
      this.size = 0;
    }
    let names = this.byNs.get(nsKey);
    if (names === undefined) {
      names = new Map();
      this.byNs.set(nsKey, names);
    }
    names.set(input.name, resolved);
    this.size++;
    return resolved;
  }
}
