/**
 * Issue #15, filesystem mode: three mirror processes on 127.0.0.1-3, one cache root each, a static
 * --peers list, Debian's docker-registry upstream. The scenarios are in harness/cluster-suite.ts.
 */
import t from 'tap';
import { requireBinaries } from './harness/binaries.js';
import { clusterSuite } from './harness/cluster-suite.js';

if (requireBinaries(t, ['docker-registry'])) clusterSuite(t, {});
