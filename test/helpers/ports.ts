import { createServer } from 'node:net';

/**
 * A port free on every one of the addresses at once (replicas on 127.0.0.1-3 share one port number):
 * the first address picks an ephemeral port, the others bind it too while all are held, then all are
 * released. Taken on one of them: another port.
 */
export async function portFreeOn(hosts: readonly string[]): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const probe = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(0, hosts[0], () => resolve((probe.address() as { port: number }).port));
    });
    const held = [probe];
    try {
      for (const host of hosts.slice(1)) {
        const s = createServer();
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.listen(port, host, () => resolve());
        });
        held.push(s);
      }
      return port;
    } catch {
      // taken on one of them: another port
    } finally {
      await Promise.all(held.map((s) => new Promise<void>((r) => s.close(() => r()))));
    }
  }
  throw new Error(`no port free on all of ${hosts.join(', ')}`);
}
