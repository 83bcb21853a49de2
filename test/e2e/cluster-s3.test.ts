/**
 * Issue #15, S3 mode: three mirror processes on 127.0.0.1-3 sharing one s3rver bucket, a static --peers
 * list, Debian's docker-registry upstream. The scenarios are in harness/cluster-suite.ts; the bucket's
 * request log counts uploads.
 */
import t from 'tap';
import { startS3Server } from '../helpers/s3-server.js';
import { requireBinaries } from './harness/binaries.js';
import { clusterSuite } from './harness/cluster-suite.js';

if (requireBinaries(t, ['docker-registry'])) {
  clusterSuite(t, {
    s3: async () => {
      const s3 = await startS3Server({ bucket: 'cluster-bucket' });
      t.teardown(() => s3.close());
      return s3;
    },
  });
}
