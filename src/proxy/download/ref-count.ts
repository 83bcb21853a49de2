/**
 * Who still needs a download's spool: the download itself while it runs, each reader, each handle not yet
 * opened, the upload. The last release runs `onZero` (the cleanup), once.
 */
export class RefCount {
  private count = 1;

  constructor(private readonly onZero: () => void) {}

  get held(): number {
    return this.count;
  }

  retain(): void {
    this.count++;
  }

  release(): void {
    if (this.count === 0) return;
    this.count--;
    if (this.count === 0) this.onZero();
  }
}
