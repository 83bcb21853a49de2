import { hostname } from 'node:os';

const REPLICA_ID = /^[a-z0-9._-]{1,100}$/;

/** `<hostname>-<pid>`, lowercased, other characters replaced by `-`: unique per process on a host. */
export function defaultReplicaId(): string {
  const raw = `${hostname()}-${process.pid}`.toLowerCase().replace(/[^a-z0-9._-]/g, '-');
  return raw.slice(-100).replace(/^\.+/, '') || `replica-${process.pid}`;
}

/** A replica id names a state object (`access/<id>`): `[a-z0-9._-]`, at most 100, not `.` or `..`. */
export function isValidReplicaId(id: string): boolean {
  return REPLICA_ID.test(id) && id !== '.' && id !== '..';
}
